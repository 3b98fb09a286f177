"""The Runs (home) page, the Train page's data check and form, run labels, and the server's CPU yield:
AppTest of the real pages on real (tiny) run folders, and the genlab functions behind them."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import copy_run
from picks import GAN_PAIR
from streamlit.testing.v1 import AppTest
from support import free_port

from genlab import dashboard, runner, runs
from genlab.data import check_data
from genlab.models import MODELS
from genlab.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60


def fake_mnist(root: Path, images: int = 5) -> Path:
    """MNIST/raw under `root` with IDX headers saying `images` images (the check reads headers only)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes((2051).to_bytes(4, "big") + images.to_bytes(4, "big") + bytes(8))
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes((2049).to_bytes(4, "big") + images.to_bytes(4, "big"))
    return root


def app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


def train_page(**query) -> AppTest:
    at = app()
    at.query_params.update(query)
    return at.run().switch_page("pages/1_Train.py").run()


def texts(at: AppTest, *kinds: str) -> str:
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def visible_runs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


# ---------------------------------------------------------------- is the data there?
def test_check_data_reads_headers_and_says_what_start_will_do(tmp_path):
    found = check_data("mnist", fake_mnist(tmp_path / "here", images=7))
    assert found.found and found.images == 7 and "7 training images" in found.message
    missing = check_data("mnist", tmp_path / "nowhere")
    assert not missing.found and missing.downloadable and "Start downloads it" in missing.message
    assert not (tmp_path / "nowhere").exists()                              # a check makes no folder
    pictures = tmp_path / "faces"
    (pictures / "a").mkdir(parents=True)
    for i in range(3):
        (pictures / "a" / f"{i}.png").write_bytes(b"not decoded by the check")
    assert check_data("imagefolder", tmp_path, pictures).images == 3
    empty = check_data("celeba64", tmp_path)
    assert not empty.found and not empty.downloadable and "no images" in empty.message
    hidden = check_data("celeba64", tmp_path, shown_root="the server's data root")
    assert str(tmp_path) not in hidden.message and "the server's data root/celeba" in hidden.message


def test_a_run_is_never_made_for_data_that_is_not_there(tmp_path):
    root = tmp_path / "runs"
    settings = Settings(runs_root=root)
    base = {"train": dict(model=GAN_PAIR, dataset="imagefolder", data_path=str(tmp_path / "empty"),
                          image_size=28, steps=4, batch_size=8, device="cpu"),
            "model": dict(g_channels=4, d_channels=4, z_dim=8)}
    (tmp_path / "empty").mkdir()
    with pytest.raises(runner.RunnerError, match="no images"):
        runner.start_run(base, settings)
    blocker = tmp_path / "a-file"
    blocker.write_text("MNIST cannot be downloaded under a file")
    mnist = {"train": dict(base["train"], dataset="mnist", data_path=None, image_size=None,
                           data_root=str(blocker / "data")), "model": base["model"]}
    with pytest.raises(runner.RunnerError, match="MNIST is not in"):
        runner.start_run(mnist, settings)
    assert not root.exists() or visible_runs(root) == []
    assert blocker.read_text().startswith("MNIST")


def test_a_failed_download_leaves_no_empty_folders(tmp_path):
    """Offline (or refused), a missing MNIST costs one clear line and leaves the data root as it was."""
    from genlab.config import TrainConfig
    from genlab.data import DataError, ensure_data
    wanted = tmp_path / "not" / "yet" / "there"
    try:
        ensure_data(TrainConfig(dataset="mnist", data_root=str(wanted)))
    except DataError as error:
        assert "MNIST is not in" in str(error) and "\n" not in str(error)
        assert not (tmp_path / "not").exists()
    else:                                            # this machine is online: it downloaded MNIST
        assert check_data("mnist", wanted).found


def test_data_root_memory_is_bounded_and_off_when_the_server_fixes_it(tmp_path):
    settings = Settings(runs_root=tmp_path / "runs")
    for i in range(dashboard.MEMORY_KEEP + 3):
        dashboard.remember_data_root(settings, "mnist", f"/data/{i}")
    dashboard.remember_data_root(settings, "synthetic", "/not/kept")           # no data root to remember
    dashboard.remember_data_root(settings, "mnist", "x" * (dashboard.MAX_PATH_CHARS + 1))
    recent = dashboard.recent_data_roots(settings)
    assert [r["root"] for r in recent] == [f"/data/{i}" for i in range(dashboard.MEMORY_KEEP + 2, 2, -1)]
    (tmp_path / "runs" / dashboard.MEMORY_NAME).write_text(json.dumps([{"root": 5}, "x", {"root": "/ok",
                                                                                           "datasets": ["mnist"]}]))
    assert dashboard.recent_data_roots(settings) == [{"root": "/ok", "datasets": ["mnist"]}]
    public = Settings(runs_root=tmp_path / "public-runs", public=True,
                      limits=Settings.from_env({"GENLAB_PUBLIC": "1"}).limits)
    dashboard.remember_data_root(public, "mnist", "/anywhere")
    assert dashboard.recent_data_roots(public) == [] and not (tmp_path / "public-runs").exists()


def test_train_page_shows_whether_the_data_is_there_before_start(runs_root, tmp_path):
    fake_mnist(tmp_path / "data", images=5)
    at = train_page(model=GAN_PAIR, dataset="mnist")
    assert not at.exception
    assert "MNIST found" in texts(at, "success") and "5 training images" in texts(at, "success")
    at = train_page(model=GAN_PAIR, dataset="mnist", data_root=str(tmp_path / "elsewhere"))
    assert "not found" in texts(at, "info") and "Start downloads it there (about 12 MB, needs internet)" in texts(at, "info")
    at.selectbox(key="train.dataset").set_value("celeba64").run()
    assert "no images" in texts(at, "error") and "Start is refused" in texts(at, "error")


def test_train_page_offers_the_data_roots_used_before(runs_root, tmp_path):
    settings = Settings.from_env()
    dashboard.remember_data_root(settings, "mnist", str(fake_mnist(tmp_path / "older")))
    dashboard.remember_data_root(settings, "mnist", str(fake_mnist(tmp_path / "newest", images=9)))
    at = train_page(model=GAN_PAIR, dataset="mnist")
    box = at.selectbox(key="train.data_root")
    assert box.value == str(tmp_path / "newest")
    assert f"{tmp_path / 'older'}  (mnist found here before)" in box.options
    assert "9 training images" in texts(at, "success")


def test_public_train_page_names_no_path_and_has_no_data_inputs(runs_root, monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_PUBLIC", "1")
    at = train_page(model=GAN_PAIR, dataset="mnist", data_root="/etc")
    assert not at.exception
    assert not [w for w in at.selectbox if w.key == "train.data_root"]
    shown = texts(at, "success", "info", "error")
    assert "the server's data root" in shown and str(tmp_path) not in shown and "/etc" not in shown


# ---------------------------------------------------------------- the form
def test_train_form_has_every_dashboard_field_of_the_readme(runs_root):
    at = train_page(model=GAN_PAIR, dataset="synthetic")
    keys = {w.key for kind in ("number_input", "selectbox", "checkbox", "text_input") for w in getattr(at, kind)}
    assert {"train.eval_every", "train.amp", "train.channels_last", "train.compile"} <= keys
    assert at.selectbox(key="train.model").options == sorted(MODELS)        # generators only, no judge


@pytest.mark.parametrize("key, text, field", [("train.max_images", "ten", "max images"),
                                              ("train.steps", -3, "steps"), ("train.batch_size", 100000, "batch size")])
def test_start_with_an_invalid_field_names_it_and_makes_no_run(runs_root, key, text, field):
    at = train_page(model=GAN_PAIR, dataset="synthetic")
    widget = at.text_input(key=key) if isinstance(text, str) else at.number_input(key=key)
    (widget.input(text) if isinstance(text, str) else widget.set_value(text))
    at.button[0].click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("Fix these fields first") and field in error
    assert visible_runs(runs_root) == []


def test_display_name_and_note_are_kept_beside_the_unique_folder(tmp_path):
    settings = Settings(runs_root=tmp_path / "runs")
    config = {"train": dict(model=GAN_PAIR, dataset="synthetic", image_size=28, steps=2, batch_size=8,
                            device="cpu", log_every=1, sample_every=1, checkpoint_every=1),
              "model": dict(g_channels=4, d_channels=4, z_dim=8)}
    label = {"name": "  wide\nbaseline " + "x" * 200, "note": "lr 2e-4\x00, [link](http://x)", "other": "dropped"}
    first = runner.start_run(config, settings, label=label)
    second = runner.start_run(config, settings, label=label)
    try:
        assert first != second
        stored = runner.read_label(first)
        assert stored["name"].startswith("wide baseline x") and len(stored["name"]) == runner.LABEL_LIMITS["name"]
        assert stored["note"] == "lr 2e-4 , [link](http://x)" and "other" not in stored
        assert runs.read_json(first / "config.json").keys() == {"train", "model"}   # the config is untouched
    finally:
        for run_dir in (first, second):
            status = runs.read_status(run_dir)
            deadline = time.time() + 120
            while runs.is_active(status) and time.time() < deadline:
                time.sleep(0.2)
                status = runs.read_status(run_dir)


# ---------------------------------------------------------------- the runs table
def test_home_rows_have_labelled_actions_links_and_best_metrics(runs_root, finished_run):
    done = copy_run(finished_run, runs_root, "tiny-finished")
    with open(done / "metrics.jsonl", "a") as f:                 # quick evals as the loop logs them
        for step, fid in ((2, 90.0), (4, 41.5), (6, 55.0)):
            f.write(json.dumps({"step": step, "eval/fid": fid}) + "\n")
    runs.atomic_write_json(done / runner.LABEL_NAME, {"name": "baseline *bold*", "note": "![x](http://evil/p.png)"})
    copy_run(finished_run, runs_root, "tiny-failed", state="failed", error="DataError: no MNIST")
    at = app().run()
    assert not at.exception
    labels = {b.key: b.label for b in at.button}
    assert labels["open-tiny-finished"] == "Open" and labels["resume-tiny-finished"] == "Resume"
    assert labels["delete-tiny-finished"] == "Delete" and labels["edit-tiny-failed"] == "Edit and restart"
    assert "edit-tiny-finished" not in labels
    links = {(link.proto.label, link.proto.page, link.proto.query_string) for link in at.get("page_link")}
    assert {("baseline \\*bold\\*", "Live_run", "run=tiny-finished"), ("tiny-failed", "Live_run", "run=tiny-failed"),
            ("Explore", "Latent_explorer", "run=tiny-finished")} <= links        # the run name opens its live view
    markdown = texts(at, "markdown", "caption")
    assert "FID 41.5** (step 4)" in markdown                          # the best so far, not the last
    assert "![x](http://evil" not in markdown and "\\!\\[x\\]" in markdown     # a note is text, never markup


def test_home_filters_by_state_and_model(runs_root, finished_run):
    copy_run(finished_run, runs_root, "tiny-finished")
    copy_run(finished_run, runs_root, "tiny-failed", state="failed", error="x")
    at = app().run()
    assert {"open-tiny-finished", "open-tiny-failed"} <= {b.key for b in at.button}
    at.multiselect(key="home.states").select("failed").run()
    keys = {b.key for b in at.button}
    assert "open-tiny-failed" in keys and "open-tiny-finished" not in keys
    at.multiselect(key="home.models").select(GAN_PAIR).run()
    assert "open-tiny-failed" in {b.key for b in at.button}


def test_a_just_started_run_has_its_row(runs_root, finished_run):
    run_dir = runs_root / "just-started"
    run_dir.mkdir()
    runs.atomic_write_json(run_dir / "config.json", runs.read_json(finished_run / "config.json"))
    runs.atomic_write_json(run_dir / "status.json", dict(state="starting", step=0, total_steps=6,
                                                         heartbeat=time.time(), **runs.process_identity(os.getpid())))
    at = app().run()
    assert not at.exception
    keys = {b.key: b for b in at.button}
    assert "open-just-started" in keys and keys["stop-just-started"].disabled   # Stop once it runs
    assert "0 / 6" in [p.text for p in at.get("progress")]
    assert "no grid yet" in texts(at, "caption")


def test_edit_and_restart_opens_the_train_form_filled_from_the_run(runs_root, finished_run):
    copy_run(finished_run, runs_root, "tiny-failed", state="failed", error="x")
    at = app().run()
    at.button(key="edit-tiny-failed").click().run()
    assert not at.exception
    assert at.selectbox(key="train.model").value == GAN_PAIR
    assert at.selectbox(key="train.dataset").value == "synthetic"
    assert at.number_input(key="train.steps").value == 6 and at.number_input(key="train.batch_size").value == 8
    assert at.number_input(key=f"model.{GAN_PAIR}.z_dim").value == 8
    assert not at.error


# ---------------------------------------------------------------- the explorer's list, the server's nice
def test_the_judge_is_never_offered_as_a_model():
    from genlab.explorer import Catalog
    keys = [key for _, key in Catalog(Settings(runs_root=Path("/nonexistent"))).choices()]
    assert keys and not [k for k in keys if "judge" in k]
    assert (REPO / "checkpoints" / "mnist-judge.safetensors").exists()       # it is there, and left out


def autogroup_nice() -> str:
    return Path("/proc/self/autogroup").read_text().split("nice")[-1].strip()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no Linux autogroup here")
def test_the_server_leaves_the_terminal_sessions_autogroup_alone(tmp_path):
    """The server runs in this test's session (so in its autogroup); once it serves, the group's nice is
    what it was: a niced autogroup would slow every later command of the terminal."""
    before = autogroup_nice()
    port = free_port()
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "genlab.serve", "--port", str(port), "--runs-root",
                                   str(tmp_path / "runs")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        assert autogroup_nice() == before
        assert os.getpriority(os.PRIO_PROCESS, server.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_explore_opens_the_run_in_the_embedded_explorer(runs_root, finished_run):
    copy_run(finished_run, runs_root, "tiny-finished")
    for asked, src in (("tiny-finished", "/explorer/?model=runs%2Ftiny-finished"), ("../../etc", "/explorer/")):
        at = app()
        at.query_params["run"] = asked
        at = at.run().switch_page("pages/3_Latent_explorer.py").run()
        assert not at.exception
        [caption] = [c.value for c in at.caption]
        assert f"[{src}]({src})" in caption


def test_the_server_slows_streamlits_config_file_polls():
    """Streamlit re-reads its config and secrets files every 0.2 s in threads; the server asks for every
    few seconds (idle wake-ups cost training CPU), and never speeds a slower setting up."""
    from streamlit.watcher import polling_path_watcher
    from genlab.serve import CONFIG_POLL_S, slow_config_file_polls
    before = polling_path_watcher._POLLING_PERIOD_SECS
    try:
        slow_config_file_polls()
        assert polling_path_watcher._POLLING_PERIOD_SECS == max(before, CONFIG_POLL_S) >= 5.0
        slow_config_file_polls(1.0)
        assert polling_path_watcher._POLLING_PERIOD_SECS >= 5.0
    finally:
        polling_path_watcher._POLLING_PERIOD_SECS = before
