"""Does watching a run slow it down? Training images/s with and without the dashboard open.

    python -m bench.dashboard_overhead --data-root ../shared/data --steps 300 --log-every 20 --sample-every 50 --repeats 3

Each trial starts the same run through `genlab.runner` (a process of its own, as the dashboard
does). "with" trials also start the one-port server (`python -m genlab.serve`) and keep headless
chromium on the run's Live page for the whole run, in a window tall enough to show every part: the
page polls the server every 2 s (status line, new grids, new metric lines), loads each new sample grid
and redraws the curves (at most every 5 s); "without" trials run nothing else. Trials alternate (without, with, with, without, ...) to spread drift in the machine's
load. Throughput is measured from the run's own metrics.jsonl over the steps after warm-up; for a
watched run also over the steps after its page was open (the target: watching a running job), since
opening the page (chromium loading Streamlit and plotly.js) is a one-off cost a short run cannot hide.
Optionally saves screenshots of the live page (--screenshots DIR).

    python -m bench.dashboard_overhead --data-root ../shared/data --log-every 20 --sample-every 50 --windows 6

`--windows N` measures within one run instead: server and chromium stay up, and the Live page is
shown and closed (about:blank) in alternating windows (closed, open, open, closed, ...), so both modes
share the run's process and the machine's drift; the server's idle cost is in both.
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


def throughput(run_dir: Path, batch_size: int, warmup_records: int, after_step: int = 0) -> float:
    """Images/s between the first record after warm-up (and after step `after_step`) and the last one,
    from the run's own clock."""
    records = [r for r in runs.read_metrics(run_dir)[warmup_records:] if r["step"] > after_step]
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


def trial(config: dict, root: Path, with_dashboard: bool, args) -> tuple[float, float]:
    """One run, watched or not; returns its images/s after warm-up, and after warm-up once the page was
    open (the same for an unwatched run), and records the dashboard's CPU use and the page's load time."""
    server = browser = playwright = None
    try:
        if with_dashboard:
            from playwright.sync_api import sync_playwright
            port = free_port()
            server = start_server(root, port, root / f"server-{port}.log")
            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 2400})   # grids and curves on screen
        run_dir = runner.start_run(config, Settings(runs_root=root))
        opened_at_step = 0
        if with_dashboard:
            asked = time.time()
            page.goto(f"http://127.0.0.1:{port}/Live_run?run={run_dir.name}")
            page.wait_for_selector(".genlab-grids", timeout=300_000)      # the live view is up and polling
            page.wait_for_function("() => document.querySelector('.js-plotly-plot')", timeout=300_000)
            opened_at_step = runs.read_status(run_dir).get("step", 0)    # ... and its curves drawn
            args.page_load_s.append(time.time() - asked)
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
        batch = config["train"]["batch_size"]
        return throughput(run_dir, batch, args.warmup_records), throughput(run_dir, batch, args.warmup_records, opened_at_step)
    finally:
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def window_rate(run_dir: Path, batch_size: int, first_step: int, last_step: int) -> float:
    """Images/s between the first and the last metrics line with first_step <= step <= last_step."""
    inside = [r for r in runs.read_metrics(run_dir) if first_step <= r["step"] <= last_step]
    if len(inside) < 2:
        raise RuntimeError(f"fewer than 2 metric lines between steps {first_step} and {last_step}; "
                           f"use longer --window-s or a smaller --log-every")
    return (inside[-1]["step"] - inside[0]["step"]) * batch_size / (inside[-1]["time"] - inside[0]["time"])


def windows(config: dict, root: Path, args) -> dict[str, list[float]]:
    """One long run with the server up and chromium open throughout, the Live page shown and closed
    (about:blank) in alternating windows of --window-s: both modes share the run, its process and the
    machine's drift. A window starts once the page is up (or closed) and settled."""
    from playwright.sync_api import sync_playwright
    port = free_port()
    server = start_server(root, port, root / f"server-{port}.log")
    rates = {"closed": [], "open": []}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 2400})
            run_dir = runner.start_run(config, Settings(runs_root=root))
            while len(runs.read_metrics(run_dir)) < args.warmup_records + 1:
                time.sleep(0.5)
            for index in range(2 * args.windows):
                mode = ("closed", "open")[(index + index // 2) % 2]         # closed, open, open, closed, ...
                if mode == "open":
                    page.goto(f"http://127.0.0.1:{port}/Live_run?run={run_dir.name}")
                    page.wait_for_function("() => document.querySelector('.js-plotly-plot')", timeout=300_000)
                else:
                    page.goto("about:blank")
                time.sleep(2.0)
                first = runs.read_status(run_dir).get("step", 0)
                time.sleep(args.window_s)
                last = runs.read_status(run_dir).get("step", 0)
                rates[mode].append(window_rate(run_dir, config["train"]["batch_size"], first, last))
                print(f"window {index + 1:2d} page {mode:6s}: {rates[mode][-1]:8.1f} images/s (steps {first}-{last}, "
                      f"load average {os.getloadavg()[0]:.1f})", flush=True)
            browser.close()
        runner.stop_run(run_dir, Settings(runs_root=root), wait=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return rates


def main_windows(args, config: dict) -> None:
    config["train"]["steps"] = 10 ** 7                    # stopped after the last window
    with tempfile.TemporaryDirectory(prefix="genlab-overhead-") as tmp:
        root = Path(tmp) / "runs"
        root.mkdir()
        rates = windows(config, root, args)
    closed, open_ = statistics.median(rates["closed"]), statistics.median(rates["open"])
    print(f"median with the Live page closed {closed:.1f} images/s, open {open_:.1f} images/s: "
          f"{100 * open_ / closed:.1f}% (target >= 95%); per pair: " +
          ", ".join(f"{100 * o / c:.1f}%" for c, o in zip(rates["closed"], rates["open"])))
    if args.json:
        args.json.write_text(json.dumps({"config": config, "window_s": args.window_s, "images_per_s": rates,
                                         "median_closed": closed, "median_open": open_, "ratio": open_ / closed,
                                         "cpus": os.cpu_count()}, indent=2))


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
    parser.add_argument("--windows", type=int, default=0,
                        help="instead of separate runs: one run, the page open and closed in this many pairs of "
                             "alternating windows (server and chromium up throughout)")
    parser.add_argument("--window-s", type=float, default=30.0, help="length of one window (--windows)")
    args = parser.parse_args()
    args.dashboard_cpu, args.page_load_s = [], []
    config = {"train": dict(model=args.model, dataset=args.dataset, data_root=args.data_root, steps=args.steps,
                            batch_size=args.batch_size, log_every=args.log_every, sample_every=args.sample_every,
                            checkpoint_every=10 ** 9, device=args.device), "model": {}}
    if args.windows:
        return main_windows(args, config)
    results = {"without": [], "with": []}          # (images/s after warm-up, ... once the page was open)
    with tempfile.TemporaryDirectory(prefix="genlab-overhead-") as tmp:
        root = Path(tmp) / "runs"
        root.mkdir()
        for pair in range(args.repeats):
            order = ("without", "with") if pair % 2 == 0 else ("with", "without")
            for mode in order:
                whole, open_ = trial(config, root, mode == "with", args)
                args.screenshots = None if mode == "with" else args.screenshots
                results[mode].append((whole, open_))
                print(f"pair {pair + 1} {mode:7s} dashboard: {whole:8.1f} images/s"
                      + (f", {open_:8.1f} once the page was open" if mode == "with" else "")
                      + f" (load average {os.getloadavg()[0]:.1f})", flush=True)
    without = statistics.median(w for w, _ in results["without"])
    with_whole = statistics.median(w for w, _ in results["with"])
    with_open = statistics.median(o for _, o in results["with"])
    summary = {"config": config, "images_per_s": results, "median_without": without,
               "median_with_whole_run": with_whole, "median_with_page_open": with_open,
               "ratio_page_open": with_open / without, "ratio_whole_run": with_whole / without,
               "page_load_s": args.page_load_s, "dashboard_cpu_cores": args.dashboard_cpu,
               "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    print(f"median without dashboard {without:.1f} images/s; with the Live page open {with_open:.1f} images/s: "
          f"{100 * with_open / without:.1f}% (target >= 95%)")
    print(f"the whole watched run, opening the page included: {with_whole:.1f} images/s, "
          f"{100 * with_whole / without:.1f}%; the page took {', '.join(f'{t:.1f}' for t in args.page_load_s)} s to open")
    print(f"dashboard (server + chromium) CPU while watching: "
          f"{', '.join(f'{100 * c:.1f}%' for c in args.dashboard_cpu)} of one core ({os.cpu_count()} cores here)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
