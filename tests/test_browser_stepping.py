"""A real browser drives a running run step by step on the Live page: Pause, one D-only step, one
G-only step (the curves' data and the grid follow each), Continue."""
import pytest

from genlab import runner, runs
from genlab.settings import Settings

from helpers import CHROMIUM, CHROMIUM_ARGS, serving, wait_for, wait_until_inactive
from picks import GAN_PAIR

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN = {"train": {"model": GAN_PAIR, "dataset": "synthetic", "image_size": 28, "steps": 100000,
                 "batch_size": 8, "log_every": 5, "sample_every": 50, "checkpoint_every": 1000, "device": "cpu"},
       "model": {}}


def manual_steps(run) -> list[tuple[int, str]]:
    return [(r["step"], r["manual"]) for r in runs.read_metrics(run) if "manual" in r]


def test_pause_step_d_step_g_and_continue_in_the_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright
    root = tmp_path / "runs"
    settings = Settings(runs_root=root)
    with serving(tmp_path / "server.log", "--runs-root", str(root), env={"GENLAB_PUBLIC": "0"}) as url:
        run = runner.start_run(RUN, settings)
        try:
            wait_for(lambda: runs.read_metrics(run), what="the first metrics line")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1200})
                    page.goto(f"{url}/Live_run?run={run.name}")
                    page.get_by_role("button", name="Pause").click(timeout=120_000)
                    expect(page.get_by_text("paused", exact=True).first).to_be_visible(timeout=120_000)   # slow under load
                    at = runs.read_status(run)["step"]
                    assert runs.is_paused(runs.read_status(run))

                    page.get_by_role("button", name="Step D only").click()
                    wait_for(lambda: manual_steps(run) == [(at + 1, "D")], what="the D step")
                    expect(page.get_by_text("1 manual step", exact=False).first).to_be_visible(timeout=30_000)
                    page.get_by_role("button", name="Step G only").click()
                    wait_for(lambda: manual_steps(run) == [(at + 1, "D"), (at + 2, "G")], what="the G step")
                    expect(page.get_by_text(f"samples at step {at + 2}")).to_be_visible(timeout=30_000)
                    expect(page.get_by_text("2 manual steps", exact=False).first).to_be_visible(timeout=30_000)
                    assert runs.read_status(run)["step"] == at + 2        # paused: nothing else trained

                    page.get_by_role("button", name="Continue").click()
                    wait_for(lambda: runs.read_metrics(run)[-1]["step"] > at + 2, what="training to go on")
                    expect(page.get_by_role("button", name="Pause")).to_be_visible(timeout=30_000)
                    assert not runs.is_paused(runs.read_status(run))
                finally:
                    browser.close()
        finally:
            if runs.is_active(runs.read_status(run)):
                runner.stop_run(run, settings, wait=True)
            assert wait_until_inactive(run)["state"] == "stopped"
