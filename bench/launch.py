"""Does a run started from the dashboard train as fast as one started from the CLI?

    python -m bench.launch --steps 60 --repeats 3

Both are fresh processes, alternated round by round: `python train.py ...` (with its progress
bar), and the dashboard's way, `python -m genlab.runner RUN_DIR` in a new session with its output
in train.log (where genlab.runner is not there, the same `train(config, run_dir, resume=True)` call
through `python -c`). Each run's speed is the median of its logged images_per_s, leaving out the
first log interval (start-up).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNER_FALLBACK = ("import sys, json; from pathlib import Path; from genlab.training import train; "
                   "run = Path(sys.argv[1]); train(json.loads((run / 'config.json').read_text()), run, resume=True)")


def run_speed(run_dir: Path) -> float:
    """Median images/s of a finished run's metric lines, without the first interval."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["images_per_s"] for r in records[1:])


def start_cli(run_dir: Path, args) -> None:
    command = [sys.executable, "train.py", "--model", args.model, "--dataset", "mnist", "--data-root", args.data_root,
               "--steps", str(args.steps), "--batch-size", str(args.batch), "--log-every", str(args.log_every),
               "--run-dir", str(run_dir)]
    with open(run_dir.parent / f"{run_dir.name}.log", "wb") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))


def start_dashboard_way(run_dir: Path, args) -> None:
    """What the dashboard's run manager does: config.json first, then a detached training process."""
    from genlab import runs
    from genlab.training import make_config
    config = make_config({"model": args.model, "dataset": "mnist", "data_root": args.data_root, "steps": args.steps,
                          "batch_size": args.batch, "log_every": args.log_every}, {})
    run_dir.mkdir(parents=True)
    runs.atomic_write_json(run_dir / "config.json", config)
    has_runner = importlib.util.find_spec("genlab.runner") is not None
    command = [sys.executable, "-m", "genlab.runner", str(run_dir)] if has_runner else \
        [sys.executable, "-c", RUNNER_FALLBACK, str(run_dir)]
    with open(run_dir / "train.log", "ab") as log:
        process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if process.wait() != 0:
        raise RuntimeError((run_dir / "train.log").read_text()[-3000:])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dcgan", help="Any registered model (default: the one measured in docs).")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    speeds = {"cli": [], "dashboard": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.repeats):
            order = ["cli", "dashboard"] if round_index % 2 == 0 else ["dashboard", "cli"]
            for way in order:
                run_dir = Path(tmp) / f"{way}-{round_index}"
                (start_cli if way == "cli" else start_dashboard_way)(run_dir, args)
                speeds[way].append(run_speed(run_dir))
                print(f"round {round_index} {way:9s} {speeds[way][-1]:7.1f} img/s", flush=True)
    ratios = [d / c for d, c in zip(speeds["dashboard"], speeds["cli"])]
    print(f"DCGAN MNIST batch {args.batch}: CLI {statistics.median(speeds['cli']):.1f} img/s, dashboard way "
          f"{statistics.median(speeds['dashboard']):.1f} img/s, ratio {statistics.median(ratios):.2f} "
          f"[{min(ratios):.2f}-{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
