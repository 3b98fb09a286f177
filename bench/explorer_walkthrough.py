#!/usr/bin/env python
"""A new user's walk through the explorer in a real browser, timed (prints numbers, saves pictures).

    python -m bench.explorer_walkthrough [--checkpoints checkpoints] [--out bench/results/walkthrough]

Starts the launch command (`python -m genlab.serve`), opens the dashboard's Latent explorer page in
headless chromium, picks mnist-infogan and steps its categorical slider 0..9, then each continuous
code from low to high, then mnist-cgan's class selector 0..9; saves every image the browser shows
and prints, per step, the time from the key press on the slider to the new image in the page.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import CHROMIUM, CHROMIUM_ARGS, free_port

REPO = Path(__file__).resolve().parents[1]


def start_server(checkpoints: Path, runs_root: Path, log: Path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "genlab.serve", "--port", str(port), "--checkpoints",
                                str(checkpoints), "--runs-root", str(runs_root)], cwd=REPO,
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the server did not start; see {log}")
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "walkthrough"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import expect, sync_playwright
    process, url = start_server(Path(args.checkpoints).resolve(), out / "runs", out / "server.log")
    timings: list[float] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(url + "/Latent_explorer")
            frame = page.frame_locator("iframe").first
            image = frame.locator("#explorer-image img")
            expect(image).to_be_visible(timeout=120_000)

            def pick(model: str):
                box = frame.locator("#explorer-model input")
                box.click()
                box.fill(model)
                frame.get_by_role("option", name=model).first.click()
                expect(frame.get_by_text(model.split("-")[-1], exact=True)).to_be_visible(timeout=60_000)
                time.sleep(1.0)

            def save(name: str):
                src = image.get_attribute("src")
                response = page.request.get(src if src.startswith("http") else url + src)
                if response.headers.get("content-type") != "image/png":
                    raise SystemExit(f"{name}: {src} answered {response.status} {response.headers.get('content-type')}")
                (out / f"{name}.png").write_bytes(response.body())

            def step(slider, key: str, name: str):
                before = image.get_attribute("src")
                start = time.perf_counter()
                slider.press(key)
                expect(image).not_to_have_attribute("src", before, timeout=30_000)
                timings.append((time.perf_counter() - start) * 1000)
                save(name)

            pick("mnist-infogan")
            cat = frame.locator("#explorer-cat0 input[type=range]")
            cat.focus()
            save("infogan-cat-0")
            for value in range(1, 10):
                step(cat, "ArrowRight", f"infogan-cat-{value}")
            for code in range(2):
                cont = frame.locator(f"#explorer-cont{code} input[type=range]")
                cont.focus()
                cont.press("Home")
                time.sleep(1.0)
                for i in range(4):
                    for _ in range(9):
                        cont.press("ArrowRight")
                    time.sleep(0.5)
                    save(f"infogan-cont{code}-{i}")
            pick("mnist-cgan")
            label = frame.locator("#explorer-class input")
            for digit in range(10):
                before = image.get_attribute("src")
                label.click()
                start = time.perf_counter()
                frame.get_by_role("option", name=str(digit), exact=True).click()
                if digit:
                    expect(image).not_to_have_attribute("src", before, timeout=30_000)
                    timings.append((time.perf_counter() - start) * 1000)
                time.sleep(0.3)
                save(f"cgan-class-{digit}")
            page.screenshot(path=str(out / "page.png"), full_page=True)
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    print(f"browser: control change -> new image on the page, {len(timings)} changes: median "
          f"{statistics.median(timings):.0f} ms, max {max(timings):.0f} ms")
    print(f"pictures in {out}")


if __name__ == "__main__":
    main()
