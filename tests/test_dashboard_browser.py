"""A real browser (Debian's chromium, driven by Playwright) against the README's launch command."""
import pytest

from genlab import runs

from helpers import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TINY_RUN = ("model=dcgan&dataset=synthetic&image_size=28&g_channels=4&d_channels=4&z_dim=8&steps=100000"
            "&batch_size=8&log_every=2&sample_every=4&checkpoint_every=1000&device=cpu")


def test_start_watch_and_stop_a_run_in_the_browser(server):
    from playwright.sync_api import expect, sync_playwright
    url, root = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Train?{TINY_RUN}")
            page.get_by_role("button", name="Start training").click(timeout=60_000)

            expect(page.get_by_text("samples at step")).to_be_visible(timeout=120_000)        # a sample grid
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot .scatterlayer .trace path')]"
                                   ".some(p => (p.getAttribute('d') || '').includes('L'))", timeout=60_000)  # a curve
            [info] = runs.list_runs(root)
            assert info.status["state"] == "running"

            # Zoom into the first panel; the 2 s refreshes that bring new points keep the zoom.
            plot = "document.querySelector('.js-plotly-plot')"
            page.locator(".js-plotly-plot").scroll_into_view_if_needed()      # below the grids
            box = page.locator(".js-plotly-plot .draglayer .xy .nsewdrag").first.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5, steps=5)
            page.mouse.up()
            zoomed = page.evaluate(f"{plot}._fullLayout.xaxis.range")
            points = page.evaluate(f"{plot}.data[0].x.length")
            page.wait_for_function(f"{plot}.data[0].x.length > {points} + 1", timeout=60_000)
            assert page.evaluate(f"{plot}._fullLayout.xaxis.range") == zoomed
            assert page.evaluate(f"{plot}._fullLayout.xaxis.autorange") is False
            assert page.locator("img[alt], [data-testid='stImage'] img").first.is_visible()

            page.get_by_role("button", name="Stop").click()
            expect(page.get_by_text("stopped", exact=True)).to_be_visible(timeout=90_000)
            assert runs.read_status(info.path)["state"] == "stopped"
            assert runs.checkpoint_path(info.path).exists()

            page.goto(f"{url}/Latent_explorer")            # the Gradio explorer, on the same port
            frame = page.frame_locator("iframe").first
            expect(frame.locator(".gradio-container")).to_be_visible(timeout=60_000)
        finally:
            browser.close()
