"""The explorer in a real browser (Debian's chromium via Playwright), reached through the dashboard's
page on the one-port server (`python -m genlab.serve`): it renders a model and a slider moves the image."""
import time

import pytest

from helpers import CHROMIUM, CHROMIUM_ARGS, serving
from test_explorer import write_checkpoint
from picks import GAN_PAIR

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXPLORER_PAGE = "/Latent_explorer"                 # pages/3_Latent_explorer.py embeds /explorer/


@pytest.fixture
def server(tmp_path):
    """The one-port server with a checkpoints folder of one small DCGAN and no runs."""
    write_checkpoint(tmp_path / "checkpoints" / f"tiny-{GAN_PAIR}.safetensors", GAN_PAIR)
    with serving(tmp_path / "server.log", "--runs-root", str(tmp_path / "runs"),
                 "--checkpoints", str(tmp_path / "checkpoints")) as url:
        yield url


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
            expect(frame.get_by_text(GAN_PAIR, exact=True)).to_be_visible()
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
