"""The explorer in a real browser (Debian's chromium via Playwright), reached through the dashboard's
page on the one-port server (`python -m genlab.serve`): it renders a model and a slider moves the image."""
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_explorer import free_port, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
EXPLORER_PAGE = "/Latent_explorer"                 # pages/3_Latent_explorer.py embeds /explorer/


@pytest.fixture
def server(tmp_path):
    """The one-port server with a checkpoints folder of one small DCGAN and no runs."""
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    write_checkpoint(tmp_path / "checkpoints" / "tiny-dcgan.safetensors", "dcgan")
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "genlab.serve", "--port", str(port),
                                "--runs-root", str(tmp_path / "runs"), "--checkpoints", str(tmp_path / "checkpoints")],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert process.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def assert_loaded(image, timeout_s: float = 30.0) -> None:
    """The <img> has decoded a picture (its URL resolves under the mount, not to a 404 or a page)."""
    deadline = time.time() + timeout_s
    while not image.evaluate("img => img.complete && img.naturalWidth > 0"):
        assert time.time() < deadline, f"the image at {image.get_attribute('src')} does not load"
        time.sleep(0.2)


def test_explorer_page_renders_and_a_slider_moves_the_image(server):
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(server + EXPLORER_PAGE)
            frame = page.frame_locator("iframe").first
            image = frame.locator("#explorer-image img")
            expect(image).to_be_visible(timeout=90_000)                     # the model's first image
            expect(frame.get_by_text("dcgan", exact=True)).to_be_visible()
            expect(frame.get_by_text("server time")).to_be_visible()
            assert_loaded(image)
            before = image.get_attribute("src")

            slider = frame.locator("#explorer-z0 input[type=range]")
            slider.focus()
            for _ in range(10):
                slider.press("ArrowRight")                                  # input events, as a drag sends
            expect(image).not_to_have_attribute("src", before, timeout=30_000)
            assert_loaded(image)                                            # the new image really loads
        finally:
            browser.close()
