"""Does watching a run slow it down? Training images/s with and without the dashboard open.

    python -m bench.dashboard_overhead --data-root ../shared/data --steps 300 --log-every 20 --sample-every 50 --repeats 3

Each trial starts the same run through `genlab.runner` (a process of its own, as the dashboard
does). "with" trials also start the one-port server (`python -m genlab.serve`) and keep headless
chromium on the run's Live page for the whole run: the page polls the server every 2 s (a fragment
rerun), loads each new sample grid and redraws the curves on each new metric line; "without" trials
run nothing else. Trials alternate (without, with, with, without, ...) to spread drift in the machine's
load. Throughput is measured from the run's own metrics.jsonl over the steps after warm-up.
Optionally saves screenshots of the live page (--screenshots DIR).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support import CHROMIUM_ARGS, free_port
from genlab import runner, runs
from genlab.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def throughput(run_dir: Path, batch_size: int, warmup_records: int) -> float:
    """Images/s between the first record after warm-up and the last one (from the run's own clock)."""
    records = runs.read_metrics(run_dir)[warmup_records:]
    if len(records) < 2:
        raise RuntimeError(f"{run_dir}: too few metric lines after warm-up; train for more steps")
    first, last = records[0], records[-1]
    return (last["step"] - first["step"]) * batch_size / (last["time"] - first["time"])


def wait_finished(run_dir: Path, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = runs.read_status(run_dir)
        if not runs.is_active(status):
            return status
        time.sleep(0.5)
    runner.stop_run(run_dir, Settings(runs_root=run_dir.parent))
    raise RuntimeError(f"{run_dir} did not finish within {timeout:.0f} s")


def start_server(root: Path, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "genlab.serve", "--port", str(port), "--runs-root", str(root)],
                               cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return process
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise RuntimeError(f"the server did not come up; see {log}")


def cpu_seconds_by_process() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) of every process, from /proc."""
    tick, table = os.sysconf("SC_CLK_TCK"), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def dashboard_cpu_seconds(exclude: set[int]) -> float:
    """CPU seconds so far of this script's descendants (server, chromium), without the `exclude` subtrees."""
    table = cpu_seconds_by_process()
    total, todo = 0.0, [os.getpid()]
    while todo:
        parent = todo.pop()
        for pid, (ppid, seconds) in table.items():
            if ppid == parent and pid not in exclude:
                total += seconds
                todo.append(pid)
    return total


def trial(config: dict, root: Path, with_dashboard: bool, args) -> float:
    """One run, watched or not; returns its images/s (and records the dashboard's CPU use)."""
    server = browser = playwright = None
    try:
        if with_dashboard:
            from playwright.sync_api import sync_playwright
            port = free_port()
            server = start_server(root, port, root / f"server-{port}.log")
            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
        run_dir = runner.start_run(config, Settings(runs_root=root))
        if with_dashboard:
            page.goto(f"http://127.0.0.1:{port}/Live_run?run={run_dir.name}")
            page.wait_for_selector(".genlab-grids", timeout=300_000)      # the live view is up and polling
            shots = 0
            training = {runs.read_status(run_dir)["pid"]}
            cpu_start, wall_start = dashboard_cpu_seconds(training), time.time()
            while runs.is_active(runs.read_status(run_dir)):
                time.sleep(1.0)
                step = runs.read_status(run_dir).get("step", 0)
                if args.screenshots and shots < 2 and step >= config["train"]["steps"] * (shots + 1) / 3:
                    args.screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.screenshots / f"live_step{step}.png"), full_page=True)
                    shots += 1
            args.dashboard_cpu.append((dashboard_cpu_seconds(training) - cpu_start) / (time.time() - wall_start))
        status = wait_finished(run_dir, args.timeout)
        if status["state"] != "finished":
            raise RuntimeError(f"{run_dir} ended {status['state']}: {status.get('error')}")
        return throughput(run_dir, config["train"]["batch_size"], args.warmup_records)
    finally:
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-root", default=os.environ.get("GENLAB_DATA_ROOT", "./data"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--sample-every", type=int, default=50, help="new grids for the page to show")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of trials")
    parser.add_argument("--warmup-records", type=int, default=2, help="metric lines skipped as warm-up")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshots", type=Path, help="save live-page screenshots here (first 'with' trial)")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    args.dashboard_cpu = []
    config = {"train": dict(model=args.model, dataset=args.dataset, data_root=args.data_root, steps=args.steps,
                            batch_size=args.batch_size, log_every=args.log_every, sample_every=args.sample_every,
                            checkpoint_every=10 ** 9, device=args.device), "model": {}}
    results = {"without": [], "with": []}
    with tempfile.TemporaryDirectory(prefix="genlab-overhead-") as tmp:
        root = Path(tmp) / "runs"
        root.mkdir()
        for pair in range(args.repeats):
            order = ("without", "with") if pair % 2 == 0 else ("with", "without")
            for mode in order:
                images_per_s = trial(config, root, mode == "with", args)
                args.screenshots = None if mode == "with" else args.screenshots
                results[mode].append(images_per_s)
                print(f"pair {pair + 1} {mode:7s} dashboard: {images_per_s:8.1f} images/s "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    without, with_ = statistics.median(results["without"]), statistics.median(results["with"])
    summary = {"config": config, "images_per_s": results, "median_without": without, "median_with": with_,
               "ratio": with_ / without, "dashboard_cpu_cores": args.dashboard_cpu,
               "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    print(f"median without dashboard {without:.1f} images/s, with dashboard open {with_:.1f} images/s: "
          f"{100 * with_ / without:.1f}% (target >= 95%)")
    print(f"dashboard (server + chromium) CPU while watching: "
          f"{', '.join(f'{100 * c:.1f}%' for c in args.dashboard_cpu)} of one core ({os.cpu_count()} cores here)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
