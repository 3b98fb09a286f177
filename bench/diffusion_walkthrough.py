#!/usr/bin/env python
"""A new user's try of diffusion in a real browser (prints what it saw and when, saves screenshots).

    python -m bench.diffusion_walkthrough --data-root ../shared/data [--steps 1200] [--out bench/results/diffusion-try]

Starts the launch command (`python -m genlab.serve`), opens the Train page with a small DDPM filled in
through the page address (?model=ddpm&width=16&...: the form a user would edit), presses Start training,
follows the Live page (a screenshot of the grid and the denoising strip at each sample step it sees),
presses Stop, then Resume, and lets it run on; then opens the Latent explorer on a shipped
checkpoint (--explore), moves the guidance and steps knobs and the Denoising tab's scrubber, timing each
new image. Needs Debian's chromium and Playwright.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from bench.explorer_walkthrough import start_server
from tests.support import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[1]
SMALL_DENOISER = dict(dataset="mnist", width=16, blocks=1, lr=0.001, ema_decay=0.995, sampling_steps=20,
                      batch_size=32, log_every=50, sample_every=250, checkpoint_every=250, eval_every=0)


def first_iterative_sampler() -> str:
    """The first registered model (by name) that samples through a trajectory: the DDPM today."""
    from genlab.models import MODELS, HasTrajectory, build_model
    return next(name for name in sorted(MODELS) if isinstance(build_model(name, dict(MODELS[name].tiny)), HasTrajectory))


def status_of(runs_root: Path) -> tuple[Path | None, dict]:
    folders = [p for p in runs_root.iterdir() if (p / "status.json").exists()] if runs_root.exists() else []
    if not folders:
        return None, {}
    run = max(folders, key=lambda p: p.stat().st_mtime)
    return run, json.loads((run / "status.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--steps", type=int, default=1200, help="The run's total steps.")
    parser.add_argument("--stop-at", type=int, default=750, help="Press Stop once the run passes this step.")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "diffusion-try"))
    parser.add_argument("--model", default=None, help="A registered model with a sampling trajectory "
                        "(default: the first by name, the DDPM).")
    parser.add_argument("--explore", default="checkpoints/mnist-ddpm", help="The shipped checkpoint to explore.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["GENLAB_DATA_ROOT"] = str(Path(args.data_root).resolve())
    from playwright.sync_api import expect, sync_playwright
    runs_root = out / "runs"
    process, url = start_server(REPO / "checkpoints", runs_root, out / "server.log")
    started = time.time()

    def log(line: str) -> None:
        print(f"{time.time() - started:7.1f} s  {line}", flush=True)

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            model = args.model or first_iterative_sampler()
            query = "&".join(f"{k}={v}" for k, v in dict(SMALL_DENOISER, model=model, steps=args.steps).items())
            page.goto(f"{url}/Train?{query}")
            page.get_by_text("Start training").first.wait_for(timeout=90_000)
            page.screenshot(path=str(out / "01-train-form.png"), full_page=True)
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Sample grids").first.wait_for(timeout=120_000)
            log(f"Start pressed; the Live page opened at {page.url}")
            seen: set[int] = set()
            stopped = False
            while True:
                run, status = status_of(runs_root)
                step = status.get("step") or 0
                samples = sorted(int(p.stem.split("_")[1]) for p in (run / "samples").glob("strip_*.png")) if run else []
                newest = samples[-1] if samples else None
                if newest is not None and newest not in seen and newest > 0:
                    seen.add(newest)
                    time.sleep(4)                             # the page reruns on a new strip
                    page.get_by_text("Sample grids").first.evaluate("e => e.scrollIntoView({block: 'start'})")
                    time.sleep(1)
                    page.screenshot(path=str(out / f"02-live-step-{newest:05d}.png"), full_page=True)
                    log(f"step {step}: the Live page shows the grid and strip of step {newest}")
                if not stopped and step >= args.stop_at:
                    page.get_by_role("button", name="Stop").first.click()
                    deadline = time.time() + 300
                    while status_of(runs_root)[1].get("state") == "running" and time.time() < deadline:
                        time.sleep(1)
                    _, status = status_of(runs_root)
                    log(f"Stop pressed: the run is {status.get('state')} at step {status.get('step')}")
                    page.reload()
                    page.get_by_role("button", name="Resume").first.wait_for(timeout=60_000)
                    page.screenshot(path=str(out / "03-stopped.png"), full_page=True)
                    page.get_by_role("button", name="Resume").first.click()
                    deadline = time.time() + 300
                    while status_of(runs_root)[1].get("state") != "running" and time.time() < deadline:
                        time.sleep(1)
                    log(f"Resume pressed: the run is {status_of(runs_root)[1].get('state')}")
                    stopped = True
                if status.get("state") in ("finished", "failed") or time.time() - started > 3600:
                    log(f"the run ended: {status.get('state')} at step {step}")
                    break
                time.sleep(2)
            page.screenshot(path=str(out / "04-live-end.png"), full_page=True)

            page.goto(f"{url}/explorer/?model={args.explore}")
            frame = page
            image = frame.locator("#explorer-image img")
            expect(image).to_be_visible(timeout=120_000)
            time.sleep(2)
            page.screenshot(path=str(out / "05-explorer.png"), full_page=True)
            for knob, keys in (("#explorer-guidance", ["ArrowRight"] * 4), ("#explorer-steps", ["Home"]),
                               ("#explorer-steps", ["End"])):
                slider = frame.locator(f"{knob} input[type=range]")
                slider.focus()
                before = image.get_attribute("src")
                begin = time.perf_counter()
                for key in keys:
                    slider.press(key)
                expect(image).not_to_have_attribute("src", before, timeout=60_000)
                log(f"{knob} {' '.join(keys)}: new image after {(time.perf_counter() - begin) * 1000:.0f} ms")
            page.screenshot(path=str(out / "06-explorer-knobs.png"), full_page=True)
            frame.get_by_role("tab", name="Denoising").click()
            scrub = frame.locator("#explorer-scrub input[type=range]")
            scrub.wait_for(timeout=60_000)
            scrub.focus()
            for _ in range(5):
                scrub.press("ArrowRight")
            time.sleep(2)
            page.screenshot(path=str(out / "07-explorer-scrubber.png"), full_page=True)
            log("the Denoising tab's scrubber moved 5 steps")
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
