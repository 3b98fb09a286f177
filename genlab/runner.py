"""Start, stop, resume and delete training runs as processes of their own.

The dashboard never trains. `start_run` writes the run folder's config.json and a "starting"
status, then launches `python -m genlab.runner RUN_DIR` in a new session, so the run outlives
the page, the browser tab and the dashboard process. Everything else (state, metrics, grids)
is read back from the run folder through `genlab.runs`; a stop is the STOP file the training
loop checks before every step. A run started from `train.py` in a terminal looks the same.

    python -m genlab.runner RUN_DIR [--steps N]     train or resume the run in RUN_DIR

Settings (environment): GENLAB_RUNS_ROOT (default ./runs), GENLAB_PUBLIC=1 for a public demo
(at most GENLAB_MAX_ACTIVE_RUNS runs at once, default 1, and GENLAB_MAX_STEPS steps, default 2000).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import runs

PACKAGE_PARENT = Path(__file__).resolve().parents[1]      # the folder holding genlab/, put on PYTHONPATH
LOG_NAME = "train.log"                                      # the training process's stdout and stderr


class RunnerError(RuntimeError):
    """A run cannot be started, resumed or stopped as asked; the message says why."""


@dataclass(frozen=True)
class Limits:
    """What the dashboard lets a visitor start: unbounded locally, capped on a public demo."""
    public: bool = False
    max_active_runs: int | None = None
    max_steps: int | None = None


def runs_root() -> Path:
    """The folder of run folders: $GENLAB_RUNS_ROOT, default ./runs."""
    return Path(os.environ.get("GENLAB_RUNS_ROOT", "runs"))


def data_root() -> str:
    """Default data_root for new runs: $GENLAB_DATA_ROOT, default ./data."""
    return os.environ.get("GENLAB_DATA_ROOT", "./data")


def limits() -> Limits:
    """The training limits from the environment (GENLAB_PUBLIC, GENLAB_MAX_ACTIVE_RUNS, GENLAB_MAX_STEPS)."""
    if os.environ.get("GENLAB_PUBLIC", "0").lower() not in ("1", "true", "yes"):
        return Limits()
    return Limits(public=True, max_active_runs=int(os.environ.get("GENLAB_MAX_ACTIVE_RUNS", "1")),
                  max_steps=int(os.environ.get("GENLAB_MAX_STEPS", "2000")))


def active_runs(root: Path) -> list[runs.RunInfo]:
    """Runs under `root` whose process is starting, running or stopping."""
    return [info for info in runs.list_runs(root) if runs.is_active(info.status)]


def check_limits(root: Path, steps: int, lim: Limits) -> None:
    """Refuse a start or resume that would break the public limits."""
    if lim.max_steps is not None and steps > lim.max_steps:
        raise RunnerError(f"this public demo trains at most {lim.max_steps} steps; asked for {steps}")
    if lim.max_active_runs is not None and len(active_runs(root)) >= lim.max_active_runs:
        raise RunnerError(f"this public demo runs at most {lim.max_active_runs} training run(s) at once; "
                          f"stop the running one first")


def start_run(config: dict, root: Path | None = None, lim: Limits | None = None) -> Path:
    """Create a run folder for a validated {"train", "model"} config and launch its training process."""
    from .training import make_config
    root = Path(root) if root is not None else runs_root()
    lim = lim if lim is not None else limits()
    config = make_config(config["train"], config.get("model", {}))      # ConfigError before any folder
    check_limits(root, config["train"]["steps"], lim)
    run_dir = runs.new_run_dir(root, config["train"]["model"], config["train"]["dataset"])
    run_dir.mkdir(parents=True)
    runs.atomic_write_json(run_dir / "config.json", config)
    _launch(run_dir, steps=None)
    return run_dir


def resume_run(run_dir: Path, steps: int | None = None, lim: Limits | None = None) -> Path:
    """Continue a stopped, interrupted, failed or finished run in a new process, optionally to `steps` in total."""
    run_dir = Path(run_dir)
    lim = lim if lim is not None else limits()
    config = runs.read_json(run_dir / "config.json")
    if config is None:
        raise RunnerError(f"{run_dir} is not a run folder (no config.json)")
    status = runs.read_status(run_dir)
    if runs.is_active(status):
        raise RunnerError(f"{run_dir.name} is still {status['state']}; stop it before resuming")
    total = steps if steps is not None else config["train"]["steps"]
    if total <= status.get("step", 0) and runs.checkpoint_path(run_dir).exists():
        raise RunnerError(f"{run_dir.name} is already at step {status.get('step', 0)} of {total}; "
                          f"give a larger total number of steps to train on")
    check_limits(run_dir.parent, total, lim)
    _launch(run_dir, steps=steps)
    return run_dir


def stop_run(run_dir: Path) -> None:
    """Ask a running run to stop gracefully: it finishes its step, saves a checkpoint and exits."""
    run_dir = Path(run_dir)
    status = runs.read_status(run_dir)
    if not runs.is_active(status):
        raise RunnerError(f"{run_dir.name} is not running")
    runs.request_stop(run_dir)        # status.json stays the training process's to write


def shown_state(run_dir: Path, status: dict) -> str:
    """The state to show: an active run with a pending STOP request is 'stopping'."""
    if status.get("state") in ("starting", "running") and runs.stop_requested(run_dir):
        return "stopping"
    return status.get("state", "missing")


def delete_run(run_dir: Path, wait_s: float = 60.0) -> None:
    """Delete a run folder; a running run is stopped first (see genlab.runs.delete_run)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists() and not (run_dir / "status.json").exists():
        raise RunnerError(f"{run_dir} is not a run folder")
    runs.delete_run(run_dir, wait_s=wait_s)


def _launch(run_dir: Path, steps: int | None) -> subprocess.Popen:
    """Launch the training process detached (own session, output to train.log) and mark the run starting."""
    command = [sys.executable, "-m", "genlab.runner", str(run_dir.resolve())]
    if steps is not None:
        command += ["--steps", str(steps)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p))
    runs.clear_stop(run_dir)
    with open(run_dir / LOG_NAME, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=os.getcwd(), start_new_session=True, close_fds=True)
    # The child waits for its stdin to close, so this "starting" status cannot overwrite one it wrote.
    status = runs.read_json(run_dir / "status.json", {}) or {}
    status.update(state="starting", pid=process.pid, host=socket.gethostname(), heartbeat=time.time(),
                  error=None, traceback=None, stop_reason=None,
                  total_steps=steps if steps is not None else (runs.read_json(run_dir / "config.json") or
                                                               {}).get("train", {}).get("steps"))
    status.setdefault("step", 0)
    runs.atomic_write_json(run_dir / "status.json", status)
    process.stdin.close()
    # Reap the child when it exits (no zombie while this process lives); no UI call is made here.
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process


def read_log(run_dir: Path, max_chars: int = 4000) -> str:
    """The end of the training process's output (train.log), for showing why a run failed."""
    try:
        text = (Path(run_dir) / LOG_NAME).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-max_chars:]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the training process: train (or continue) the run whose folder is given."""
    from .training import train
    parser = argparse.ArgumentParser(prog="python -m genlab.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, help="new total number of steps")
    args = parser.parse_args(argv)
    if not sys.stdin.closed and not sys.stdin.isatty():
        sys.stdin.read()                                         # the launcher has written "starting"
    config = runs.read_json(args.run_dir / "config.json")
    if config is None:
        print(f"{args.run_dir} is not a run folder (no config.json)", file=sys.stderr)
        return 2
    if args.steps is not None:
        config["train"]["steps"] = args.steps
    try:
        # A fresh folder has a config and no checkpoint: resuming it trains from step 0.
        from .cli import make_evaluator                          # eval_every > 0: genlab.eval's, handed in
        status = train(config, args.run_dir, resume=True, evaluator=make_evaluator(config["train"]))
    except Exception as error:  # noqa: BLE001  (any failure is reported in status.json)
        if runs.read_json(args.run_dir / "status.json", {}).get("state") != "failed":   # e.g. missing data
            runs.write_status(args.run_dir, "failed", error=f"{type(error).__name__}: {error}",
                              traceback=traceback.format_exc(limit=8))
        traceback.print_exc()
        return 1
    print(f"{status['state']} at step {status['step']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
