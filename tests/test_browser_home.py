"""A real browser (Debian's chromium, Playwright) on the Runs and Train pages at a laptop's 1280 px:
labelled actions that are not clipped, run names that open the live view, no request to another host,
invalid fields named on Start, the data check, Edit and restart, the explorer's examples under /explorer."""
import shutil
import time
from pathlib import Path

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, serving
from picks import GAN_PAIR

from genlab import runner, runs, train
from genlab.training import make_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LAPTOP = {"width": 1280, "height": 800}
# Every button and link in the main area whose text is cut (its box, or a text element inside it, scrolls).
CLIPPED = """() => [...document.querySelectorAll('[data-testid=stMain] button, [data-testid=stMain] a')]
    .filter(e => e.offsetParent !== null)
    .filter(e => e.scrollWidth > e.clientWidth + 1 ||
                 [...e.querySelectorAll('p, span, div')].some(t => t.scrollWidth > t.clientWidth + 1))
    .map(e => e.innerText || e.getAttribute('aria-label'))"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """genlab.serve on a runs root holding three finished tiny runs (one named by its user) and a failed one."""
    tmp = tmp_path_factory.mktemp("home")
    source = tmp / "source"
    train(make_config(dict(model=GAN_PAIR, dataset="synthetic", image_size=28, steps=6, batch_size=8, log_every=2,
                           sample_every=3, checkpoint_every=3, device="cpu"), dict(g_channels=4, d_channels=4, z_dim=8)),
          source)
    root = tmp / "runs"
    root.mkdir()
    for name in ("20261127-101500-dcgan-synthetic", "20261127-101600-dcgan-synthetic", "20261127-101700-dcgan-synthetic"):
        shutil.copytree(source, root / name)
    runs.atomic_write_json(root / "20261127-101600-dcgan-synthetic" / runner.LABEL_NAME,
                           {"name": "wider discriminator", "note": "d_channels 4, lr 2e-4"})
    failed = root / "20261127-101700-dcgan-synthetic"
    runs.atomic_write_json(failed / "status.json", dict(runs.read_json(failed / "status.json"), state="failed",
                                                        error="DataError: MNIST is not in ./data/MNIST/raw"))
    with serving(tmp / "server.log", "--runs-root", str(root), "--data-root", str(tmp / "data"),
                 env={"GENLAB_PUBLIC": "0"}) as url:
        yield url, root


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=LAPTOP)
            page.other_hosts = []
            page.on("request", lambda r: page.other_hosts.append(r.url)
                    if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
            yield page
        finally:
            browser.close()


def test_runs_table_at_1280px_labelled_actions_links_and_no_other_host(server, page):
    from playwright.sync_api import expect
    url, _ = server
    page.goto(f"{url}/Train")                       # the server's first session, and not on the Runs page
    expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=60_000)
    nav = page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
    assert nav[:2] == ["Runs", "Train"], nav                                   # not "app"
    page.goto(url)
    opens = page.locator("[data-testid^=stBaseButton]:visible").filter(has_text="Open")     # not the filters' "Open" arrows
    expect(opens).to_have_count(3, timeout=60_000)
    time.sleep(1)
    assert page.evaluate(CLIPPED) == []
    for name in ("Open", "Resume", "Delete", "Edit and restart"):
        assert page.get_by_role("button", name=name).first.is_visible()
    assert page.locator("[data-testid=stMain] a:visible").filter(has_text="Explore").count() == 3
    assert page.get_by_text("d_channels 4, lr 2e-4").is_visible()
    page.get_by_role("link", name="wider discriminator").click()
    expect(page).to_have_url(f"{url}/Live_run?run=20261127-101600-dcgan-synthetic", timeout=30_000)
    expect(page.get_by_text("[finished]").or_(page.get_by_text("finished", exact=True)).first).to_be_visible(
        timeout=60_000)
    assert page.other_hosts == []                                              # the tab icon is served here


def test_edit_and_restart_prefills_the_train_form(server, page):
    from playwright.sync_api import expect
    url, _ = server
    page.goto(url)
    page.get_by_role("button", name="Edit and restart").click(timeout=60_000)
    steps = page.get_by_role("spinbutton", name="steps", exact=True)
    expect(steps).to_have_value("6", timeout=60_000)
    expect(page.get_by_role("spinbutton", name="z dim", exact=True)).to_have_value("8")
    assert "/Train" in page.url


def test_train_page_checks_data_and_names_invalid_fields(server, page, tmp_path):
    from playwright.sync_api import expect
    url, root = server
    page.goto(f"{url}/Train?model={GAN_PAIR}&dataset=mnist")
    expect(page.get_by_text("MNIST not found")).to_be_visible(timeout=60_000)
    assert "Start downloads it" in page.get_by_text("MNIST not found").inner_text()
    raw = tmp_path / "elsewhere" / "MNIST" / "raw"                 # another data root, typed in the box
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes((2051).to_bytes(4, "big") + (12).to_bytes(4, "big"))
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes((2049).to_bytes(4, "big") + (12).to_bytes(4, "big"))
    box = page.get_by_role("combobox", name="data root")
    box.click()
    box.fill(str(tmp_path / "elsewhere"))
    box.press("Enter")
    expect(page.get_by_text("12 training images")).to_be_visible(timeout=30_000)

    page.get_by_role("spinbutton", name="steps", exact=True).fill("-3")      # a browser box used to drop it
    page.get_by_role("textbox", name="max images").fill("ten")
    page.get_by_role("button", name="Start training").click()
    error = page.get_by_text("Fix these fields first")
    expect(error).to_be_visible(timeout=30_000)
    assert "steps" in error.inner_text() and "max images" in error.inner_text()
    assert len([p for p in root.iterdir() if not p.name.startswith(".")]) == 3


def test_explorer_examples_load_under_the_explorer_mount(server, page):
    from playwright.sync_api import expect
    url, _ = server
    if not list((Path(__file__).resolve().parents[1] / "checkpoints" / "examples").glob("*.png")):
        pytest.skip("no example images in checkpoints/examples")
    vae = [p.stem for p in (Path(__file__).resolve().parents[1] / "checkpoints").glob("*vae*.safetensors")]
    if not vae:
        pytest.skip("no shipped VAE checkpoint")
    page.goto(f"{url}/explorer/?model=checkpoints/{vae[0]}")                   # preselected from the address
    expect(page.get_by_role("tab", name="Encode")).to_be_visible(timeout=60_000)
    page.get_by_role("tab", name="Encode").click()
    page.locator("[data-testid=dataset] button, .gallery-item, table button").first.click()
    page.wait_for_function("() => [...document.querySelectorAll('img')].some(i => i.src.includes('/explorer/gradio_api/file=')"
                           " && i.naturalWidth > 0 && i.closest('[data-testid=image], .image-container, .upload-container'))",
                           timeout=30_000)
    broken = page.evaluate("[...document.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth === 0"
                           " && !i.src.startsWith('data:')).map(i => i.src)")
    assert broken == []
