"""The Gradio Space in a real browser (Debian's chromium via Playwright): press Train, watch the sample
grid update while genlab's loop trains (the first listed model, tiny, on MNIST), then "Explore it"."""
import dataclasses
import time

import pytest

from helpers import CHROMIUM, CHROMIUM_ARGS
from test_space import TINY_FIELDS, launched, tiny_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.data]


@pytest.fixture
def space_url(tmp_path, mnist_data_root):
    settings = tiny_settings(tmp_path, max_steps=60)
    settings = dataclasses.replace(settings, data_root=mnist_data_root)
    demo, client = launched(settings, model_fields=TINY_FIELDS,
                            schedule=dict(log_every=4, sample_every=8, checkpoint_every=20))
    try:
        yield client.src
    finally:
        demo.close()


def test_train_updates_the_grid_then_explore_it(space_url):
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(space_url)
            page.locator("#space-train").click()
            grid = page.locator("#space-grid img")
            expect(grid).to_be_visible(timeout=120_000)                   # the first grid
            first = grid.get_attribute("src")
            expect(grid).not_to_have_attribute("src", first, timeout=120_000)   # a newer one replaced it
            expect(page.locator("#space-status")).to_contain_text("finished", timeout=120_000)
            expect(page.locator("#space-curves")).to_be_visible()
            expect(page.locator("#space-download")).to_be_visible()

            page.locator("#space-explore").click()                         # the run, in the explorer tab
            image = page.locator("#explorer-image img")
            expect(image).to_be_visible(timeout=60_000)
            deadline = time.time() + 30
            while not image.evaluate("img => img.complete && img.naturalWidth > 0"):
                assert time.time() < deadline, "the explorer's image does not load"
                time.sleep(0.2)
            expect(page.get_by_text("runs/", exact=False).first).to_be_visible()
        finally:
            browser.close()
