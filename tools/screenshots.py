"""Screenshots of the pages a user sees, at 1280x800 and 1920x1080, into docs/images/.

    python -m tools.screenshots --data-root ../shared/data [--out docs/images]

Starts `genlab serve` on a fresh runs root, starts a DCGAN and a VAE run on MNIST, shoots the home,
Train and Live pages while they train, pauses the DCGAN after a few hundred steps and takes a G-only
manual step, then shoots the Live page (paused, the VAE
overlaid; then scrolled to both runs' grids and their config differences) and the latent explorer (the shipped cGAN, then the paused run); stops both
runs at the end. Needs Debian's chromium and Playwright.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = ((1280, 800), (1920, 1080))


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := condition():
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data", help="Folder holding MNIST/raw.")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--port", type=int, default=8612)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from support import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    from genlab import make_config, runner, runs
    from genlab.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="genlab-shots-"))
    env = dict(os.environ, GENLAB_RUNS_ROOT=str(root / "runs"), GENLAB_DATA_ROOT=str(Path(args.data_root).resolve()))
    settings = Settings.from_env(env)
    server = subprocess.Popen([sys.executable, "-m", "genlab.serve", "--port", str(args.port)], cwd=REPO, env=env,
                              stdout=open(root / "serve.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{args.port}"
    started = []
    try:
        wait_for(lambda: _healthy(url), 120, "the server")
        common = dict(dataset="mnist", data_root=str(Path(args.data_root).resolve()), steps=3000, log_every=20,
                      sample_every=50, checkpoint_every=100, batch_size=64)
        gan = runner.start_run(make_config(dict(common, model=runner_default_model()), {}), settings,
                               label={"name": "DCGAN, step by step", "note": "paused for the screenshots"})
        vae = runner.start_run(make_config(dict(common, model=second_family()), {}), settings,
                               label={"name": "a VAE beside it", "note": ""})
        started += [gan, vae]
        wait_for(lambda: (runs.read_status(gan).get("step") or 0) >= 300, 900, "300 DCGAN steps")
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for width, height in SIZES:                       # mid-training
                page = browser.new_page(viewport={"width": width, "height": height})
                shoot(page, url, "genlab runs", args.out / f"home-{width}x{height}.png", settle=3)
                shoot(page, f"{url}/Train", "Start training", args.out / f"train-{width}x{height}.png", settle=3)
                shoot(page, f"{url}/Live_run?run={gan.name}", "Sample grids", args.out / f"live-{width}x{height}.png",
                      scroll_to="Sample grids")
                page.close()
            runner.pause_run(gan, settings)
            wait_for(lambda: runs.is_paused(runs.read_status(gan)), 60, "the pause")
            runner.step_run(gan, settings, phases=["G"], k=1)
            wait_for(lambda: runs.read_status(gan).get("partial_steps"), 60, "the G-only step")
            for width, height in SIZES:
                page = browser.new_page(viewport={"width": width, "height": height})
                shoot(page, f"{url}/Live_run?run={gan.name}&overlay={vae.name}", "Step by step",
                      args.out / f"live-paused-{width}x{height}.png")
                shoot(page, f"{url}/Live_run?run={gan.name}&overlay={vae.name}", "Config differences",
                      args.out / f"compare-{width}x{height}.png", expand="Config differences", scroll_to="Sample grids")
                shoot(page, f"{url}/explorer/?model=checkpoints/mnist-cgan", "Seed",
                      args.out / f"explorer-{width}x{height}.png", settle=4)
                page.close()
            browser.close()
    finally:
        for run_dir in started:
            try:
                runner.continue_run(run_dir, settings)
                runner.stop_run(run_dir, settings, wait=True)
            except Exception as error:  # noqa: BLE001  (best effort at the end)
                print(f"could not stop {run_dir.name}: {error}", file=sys.stderr)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    for path in [args.out / f"{kind}-{w}x{h}.png" for kind in ("home", "train", "live", "live-paused", "compare", "explorer")
                 for w, h in SIZES]:
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")
    return 0


def runner_default_model() -> str:
    from genlab.config import DEFAULT_MODEL
    return DEFAULT_MODEL


def second_family() -> str:
    """A model with an encoder (a different family from the default GAN), chosen by capability."""
    from genlab.models import MODELS, HasEncoder
    import torch
    with torch.device("meta"):
        return next(name for name, cls in sorted(MODELS.items())
                    if isinstance(cls(cls.config_class(**cls.tiny)), HasEncoder))


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


def shoot(page, address: str, waiting_for: str, path: Path, settle: float = 6, expand: str | None = None,
          scroll_to: str | None = None) -> None:
    """Open `address`, wait until `waiting_for` is on the page and the grids have loaded, open the
    expander `expand`, scroll `scroll_to` to the top, save a PNG."""
    page.goto(address)
    page.get_by_text(waiting_for).first.wait_for(timeout=90_000)
    time.sleep(settle)
    if expand:
        page.get_by_text(expand).first.click()
        time.sleep(1)
    if scroll_to:
        page.get_by_text(scroll_to).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        time.sleep(1)
    page.screenshot(path=str(path))


if __name__ == "__main__":
    sys.exit(main())
