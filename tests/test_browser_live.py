"""The Live run page in a real browser (Debian's chromium, Playwright) against `python -m genlab.serve`:
it follows a running run without a reload, scrubs and plays its grids client-side, smooths in the
browser, keeps the view in the URL, and picks up a run started after the page opened."""
import pytest

from genlab import runner, runs
from genlab.settings import Settings

from helpers import CHROMIUM, CHROMIUM_ARGS, tiny_config, wait_for
from picks import GAN_PAIR, ONE_NETWORK

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GRIDS = ".genlab-grids"
SLIDER = f"{GRIDS} input[type=range]"


def start(root, model, **train):
    config = tiny_config(model, **dict(dict(steps=100000, log_every=2, sample_every=8, checkpoint_every=100000), **train))
    return runner.start_run(config, Settings(runs_root=root))


def label(page) -> str:
    return page.locator(f"{GRIDS} .label").inner_text()


def test_live_page_follows_scrubs_plays_and_keeps_its_view_in_the_url(server):
    from playwright.sync_api import expect, sync_playwright
    url, root = server
    first = start(root, GAN_PAIR)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/Live_run?run={first.name}&smooth=0.8")
            page.wait_for_function(f"() => [...document.querySelectorAll('{GRIDS} figure img')]"
                                   ".some(i => i.complete && i.naturalWidth > 0)", timeout=180_000)   # a grid
            # New grids arrive without a reload: the one slider grows and follows the newest.
            count = int(page.locator(SLIDER).get_attribute("max"))
            page.wait_for_function(f"() => +document.querySelector('{SLIDER}').max > {count} + 1", timeout=180_000)
            assert page.locator(f"{GRIDS} .follow").is_checked()

            # Arrow keys and Home move the step in the browser; the step goes into the URL.
            page.locator(SLIDER).focus()
            page.keyboard.press("Home")
            expect(page.locator(f"{GRIDS} .label")).to_contain_text("step 0 of")
            assert not page.locator(f"{GRIDS} .follow").is_checked()
            page.keyboard.press("ArrowRight")
            expect(page.locator(f"{GRIDS} .label")).to_contain_text("step 1 of")
            assert "step=1" in page.url
            assert page.locator(f"{GRIDS} figure img").first.get_attribute("src").split("?")[0].endswith("step_000001.png")

            # Play walks through the grids on its own.
            page.locator(f"{GRIDS} .play").click()
            page.wait_for_function(f"() => !/step [01] of/.test(document.querySelector('{GRIDS} .label').textContent)",
                                   timeout=30_000)

            # Smoothing is applied in the browser (the smoothed line changes) and kept in the URL.
            plot = "document.querySelector('.js-plotly-plot')"
            page.wait_for_function(f"() => {plot} && {plot}.data && {plot}.data.length > 1", timeout=180_000)
            before = page.evaluate(f"{plot}.data[1].y.slice(-1)[0]")
            smooth = page.locator(".genlab-curves-bar .smooth")
            assert smooth.input_value() == "0.8"
            smooth.evaluate("e => { e.value = '0.2'; e.dispatchEvent(new Event('input', {bubbles: true})); }")
            page.wait_for_function("() => location.search.includes('smooth=0.20')", timeout=10_000)
            assert page.evaluate(f"{plot}.data[1].y.slice(-1)[0]") != before
            assert page.evaluate(f"{plot}.layout.xaxis.title.text") == "step"

            # A run started after the page opened appears in "overlay runs" without a reload.
            second = start(root, ONE_NETWORK)
            picker = page.locator("[data-testid=stMultiSelect] [data-testid=stMultiSelectTagsContainer]")
            wait_for(lambda: runs.list_samples(second), timeout=180, what="the second run's first grid")
            def offered() -> bool:
                picker.click()
                found = page.get_by_role("option", name=second.name).count() > 0
                page.keyboard.press("Escape")
                return found
            wait_for(offered, timeout=60, what="the new run in the overlay picker")
            picker.click()
            page.get_by_role("option", name=second.name).click()
            page.keyboard.press("Escape")
            expect(page.locator(f"{GRIDS} figure")).to_have_count(2, timeout=60_000)   # both runs, one slider
            page.wait_for_function("() => location.search.includes('overlay=')", timeout=30_000)

            # A reload (or a shared link) restores the view.
            page.locator(SLIDER).focus()
            page.keyboard.press("Home")
            page.keyboard.press("ArrowRight")
            page.wait_for_function("() => location.search.includes('step=1')", timeout=10_000)
            page.reload()
            expect(page.locator(f"{GRIDS} figure")).to_have_count(2, timeout=180_000)
            expect(page.locator(f"{GRIDS} .label")).to_contain_text("step 1 of", timeout=60_000)
            assert page.locator(".genlab-curves-bar .smooth").input_value() == "0.2"

            # The status line follows the run without a rerun, and a state change reruns the page's
            # buttons: stopped from elsewhere, the run's Stop button becomes Resume without a reload.
            text = page.locator(".genlab-status .text")
            shown = text.inner_text()
            page.wait_for_function(f"() => document.querySelector('.genlab-status .text').textContent !== {shown!r}",
                                   timeout=60_000)
            runner.stop_run(first, Settings(runs_root=root))
            expect(page.locator(".genlab-status .badge")).to_have_text("stopped", timeout=120_000)
            expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=30_000)
        finally:
            browser.close()
