"""AppTest of every dashboard page with no runs, a finished run, a running run and a failed run."""
import os
import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from genlab import runs
from genlab.dashboard import curves_figure, ema, metric_keys, progress
from genlab.models import MODELS
from helpers import copy_run
from picks import GAN_PAIR, ONE_NETWORK

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60


@pytest.fixture
def live_pid():
    """A live process a fake "running" run can name (Stop and Delete signal it, never this test)."""
    import subprocess
    import sys
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(300)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    process.stdout.readline()                        # SIGTERM is ignored from here on (a step that runs long)
    yield process.pid
    process.kill()
    process.wait()


def running(source: Path, root: Path, pid: int, name: str = "tiny-running") -> Path:
    """A run whose status names a live process on this host (its full identity)."""
    return copy_run(source, root, name, state="running", step=4, total_steps=6, **runs.process_identity(pid))


def failed(source: Path, root: Path) -> Path:
    return copy_run(source, root, "tiny-failed", state="failed",
                    error="DataError: MNIST not found under ./nowhere; pass --data-root")


def app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


def text_of(at: AppTest) -> str:
    return "\n".join([str(e.value) for kind in ("markdown", "caption", "info", "error", "warning", "title")
                      for e in getattr(at, kind)] + [e.proto.label for e in at.get("page_link")])


# ---------------------------------------------------------------- home
def test_home_without_runs(runs_root):
    at = app().run()
    assert not at.exception
    assert "No runs yet" in text_of(at)


def test_home_lists_runs_with_state_and_actions(runs_root, finished_run, live_pid):
    copy_run(finished_run, runs_root, "tiny-finished")
    running(finished_run, runs_root, live_pid)
    failed(finished_run, runs_root)
    at = app().run()
    assert not at.exception
    text = text_of(at)
    for name, state in (("tiny-finished", "finished"), ("tiny-running", "running"), ("tiny-failed", "failed")):
        assert name in text and f"[{state}]" in text
    assert sorted(p.text for p in at.get("progress")) == ["4 / 6", "6 / 6", "6 / 6"]
    keys = {b.key for b in at.button}
    assert {"stop-tiny-running", "resume-tiny-finished", "resume-tiny-failed", "delete-tiny-failed"} <= keys
    assert "stop-tiny-finished" not in keys and "resume-tiny-running" not in keys


def test_home_delete_asks_first(runs_root, finished_run):
    copy_run(finished_run, runs_root, "tiny-finished")
    at = app().run()
    at.button(key="delete-tiny-finished").click().run()
    assert (runs_root / "tiny-finished").exists()
    assert any("Delete" in w.value for w in at.warning)
    at.button(key="confirm-delete-tiny-finished").click().run()
    assert not at.exception
    assert not (runs_root / "tiny-finished").exists()


def test_home_stop_writes_a_stop_request(runs_root, finished_run, live_pid):
    run_dir = running(finished_run, runs_root, live_pid)
    at = app().run()
    at.button(key="stop-tiny-running").click().run()
    assert runs.stop_requested(run_dir)
    assert "[stopping]" in text_of(at)


# ---------------------------------------------------------------- live run page
def run_page(name: str | None) -> AppTest:
    at = app()
    if name:
        at.query_params["run"] = name
    return at.run().switch_page("pages/2_Live_run.py").run()


def test_run_page_without_runs(runs_root):
    at = run_page(None)
    assert not at.exception
    assert "No runs yet" in text_of(at)


def test_run_page_finished_run(runs_root, finished_run):
    copy_run(finished_run, runs_root, "tiny-finished")
    at = run_page("tiny-finished")
    assert not at.exception
    assert "[finished]" in text_of(at)
    assert at.get("plotly_chart"), "no loss curves"
    assert at.get("image"), "no sample grid"
    assert at.button(key="resume-tiny-finished") and not [b for b in at.button if b.key == "stop-tiny-finished"]
    assert at.number_input(key="steps-tiny-finished").value == 12          # resume trains on to twice as far


def test_run_page_running_run_can_be_stopped(runs_root, finished_run, live_pid):
    run_dir = running(finished_run, runs_root, live_pid)
    at = run_page("tiny-running")
    assert not at.exception
    assert "[running]" in text_of(at) and "step 4 / 6" in at.get("progress")[0].text
    at.button(key="stop-tiny-running").click().run()
    assert runs.stop_requested(run_dir)


def test_run_page_failed_run_shows_error_and_overlay(runs_root, finished_run):
    copy_run(finished_run, runs_root, "tiny-finished")
    failed(finished_run, runs_root)
    at = run_page("tiny-failed")
    assert not at.exception
    assert any("MNIST not found" in e.value for e in at.error)
    at.multiselect(key="run.overlay").select("tiny-finished").run()
    assert not at.exception
    assert at.get("plotly_chart")
    at.toggle(key="run.log_y").set_value(True).run()
    assert not at.exception


# ---------------------------------------------------------------- train page
def train_page(**query) -> AppTest:
    at = app()
    at.query_params.update(query)
    return at.run().switch_page("pages/1_Train.py").run()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_train_page_builds_widgets_from_the_model_config(runs_root, model):
    from genlab.config import field_specs
    from genlab.models import get_model_class
    at = train_page(model=model, dataset="synthetic")
    assert not at.exception
    keys = {w.key for kind in ("number_input", "selectbox", "checkbox", "text_input") for w in getattr(at, kind)}
    for spec in field_specs(get_model_class(model).config_class):
        assert (f"model.{model}.{spec['name']}" in keys) != spec["derived"], spec["name"]
    assert {"train.steps", "train.batch_size", "train.device", "train.channels"} <= keys


def test_train_page_refuses_a_second_run_in_public_mode(runs_root, finished_run, monkeypatch, live_pid):
    monkeypatch.setenv("GENLAB_PUBLIC", "1")
    running(finished_run, runs_root, live_pid)
    at = train_page(model=ONE_NETWORK, dataset="synthetic", steps="10")
    assert at.number_input(key="train.steps").value == 10
    at.button[0].click().run()          # the form's Start button
    assert not at.exception
    assert any("at most 1 training run" in e.value and "max_active_runs" in e.value for e in at.error)
    assert [p.name for p in runs_root.iterdir() if not p.name.startswith(".")] == ["tiny-running"]


def test_explorer_page_embeds_the_mounted_explorer(runs_root):
    at = app().run().switch_page("pages/3_Latent_explorer.py").run()
    assert not at.exception
    assert "/explorer/" in text_of(at)


# ---------------------------------------------------------------- numbers behind the views
def test_ema_is_bias_corrected():
    assert ema([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])     # no pull towards 0
    assert ema([0.0, 10.0], 0.5) == pytest.approx([0.0, 5.0 / 0.75])           # m_2 / (1 - 0.5^2)
    assert ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]


def test_curves_figure_has_a_raw_and_a_smoothed_line_per_metric_and_run():
    records = [{"step": s, "loss/d": 1.0 / s, "loss/g": 2.0, "d/real": 0.5, "images_per_s": 9.0} for s in (1, 2, 3)]
    fig = curves_figure({"a": records, "b": records[:2]}, smoothing=0.5, log_y=True)
    assert metric_keys(records) == ["loss/d", "loss/g", "d/real"]
    assert len(fig["data"]) == 2 * 3 * 2
    assert fig["layout"]["uirevision"] == "curves" and fig["layout"]["yaxis"]["type"] == "log"
    import plotly.graph_objects as go
    go.Figure(fig)                                        # plotly's own validation accepts every field


def test_progress_text():
    fraction, text = progress({"state": "running", "step": 50, "total_steps": 100, "images_per_s": 64.0,
                               "pid": os.getpid(), "host": socket.gethostname()}, {"train": {"batch_size": 64}})
    assert fraction == 0.5 and text == "step 50 / 100 · 64 images/s · ETA 50 s"


def test_run_page_live_curves_component_when_served_with_plotly_js(runs_root, finished_run, monkeypatch):
    import json
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    from genlab.dashboard import CURVES_ROUTE, curves_route
    from genlab.settings import Settings
    monkeypatch.setenv("GENLAB_PLOTLY_JS", "/genlab-assets/plotly.min.js")
    monkeypatch.setenv("GENLAB_CURVES_URL", CURVES_ROUTE)
    copy_run(finished_run, runs_root, "tiny-finished")
    at = run_page("tiny-finished")
    assert not at.exception
    [component] = at.get("bidi_component")
    payload = json.loads(component.proto.json)
    assert payload["plotly_js"] == "/genlab-assets/plotly.min.js"
    assert payload["url"].startswith("/genlab-curves?runs=tiny-finished&v=")
    assert not at.get("plotly_chart")
    client = TestClient(Starlette(routes=[curves_route(Settings(runs_root=runs_root))]))
    figure = client.get(payload["url"]).json()                # what the browser fetches
    assert figure["layout"]["uirevision"] == "curves" and len(figure["data"]) == 2 * 5   # 5 metrics, raw + EMA
    assert all(t["y"] is None for t in figure["data"] if "meta" in t)   # smoothed in the browser


# ---------------------------------------------------------------- hostile URLs, public caps, ownership
@pytest.mark.parametrize("query", [{"steps": "-5"}, {"batch_size": "abc"}, {"steps": "10", "lr": "nan"},
                                   {"image_size": "100000"}, {"seed": "1e999"}, {"dataset": "../../etc"}])
def test_out_of_range_url_parameters_show_one_error_and_a_usable_form(runs_root, query):
    at = train_page(model=GAN_PAIR, **query)
    assert not at.exception
    assert [b for b in at.button if "Start" in str(b.label)], "no Start button"
    bad = [k for k in query if k not in ("dataset", "steps") or query[k] == "-5"]
    if bad:
        assert len(at.error) == 1 and all(k in at.error[0].value for k in bad)
    assert at.number_input(key="train.steps").value >= 1


def test_an_invalid_optional_field_is_reported_on_start(runs_root):
    at = train_page(model=GAN_PAIR, dataset="synthetic")
    at.text_input(key="train.image_size").input("huge")
    at.button[0].click().run()                           # a form's fields are sent with its submit button
    assert not at.exception
    assert any("image size" in e.value and "not a whole number" in e.value for e in at.error)
    assert not list(runs_root.iterdir())


def public(monkeypatch, **caps):
    monkeypatch.setenv("GENLAB_PUBLIC", "1")
    for name, value in caps.items():
        monkeypatch.setenv(f"GENLAB_{name.upper()}", str(value))


def test_public_form_has_builtin_data_only_and_bounded_widgets(runs_root, monkeypatch):
    public(monkeypatch, max_steps=300, max_batch_size=32)
    at = train_page(model=GAN_PAIR, dataset="mnist")
    assert not at.exception
    assert "imagefolder" not in at.selectbox(key="train.dataset").options
    keys = {w.key for w in at.text_input}
    assert "train.data_root" not in keys and "train.data_path" not in keys
    assert "At most 300" in at.number_input(key="train.steps").help       # the range is checked on Start,
    assert "At most 32" in at.number_input(key="train.batch_size").help   # not by the browser widget
    assert "At least 50" in at.number_input(key="train.sample_every").help
    over = train_page(model=GAN_PAIR, dataset="mnist", steps="5000", data_root="/etc")
    assert not over.exception and "steps" in over.error[0].value and "/etc" not in over.error[0].value
    assert over.number_input(key="train.steps").value <= 300


def test_public_start_names_the_limit_it_breaks(runs_root, monkeypatch):
    public(monkeypatch, max_parameters=1000)
    at = train_page(model=GAN_PAIR, dataset="synthetic", steps="10")
    at.button[0].click().run()
    assert not at.exception
    assert any("max_parameters" in e.value for e in at.error)
    assert not [p for p in runs_root.iterdir() if not p.name.startswith(".")]


def owned(run_dir: Path, token: str) -> Path:
    from genlab import runner
    runs.atomic_write_json(run_dir / runner.OWNER_NAME, {"owner_sha256": runner.owner_hash(token)})
    return run_dir


def test_public_buttons_only_for_this_sessions_runs(runs_root, finished_run, monkeypatch, live_pid):
    from genlab import runner
    from genlab.settings import Settings
    public(monkeypatch, max_active_runs=5)
    settings = Settings.from_env()
    mine, theirs = runner.new_owner_token(settings), runner.new_owner_token(settings)
    owned(copy_run(finished_run, runs_root, "mine-finished"), mine)
    owned(copy_run(finished_run, runs_root, "theirs-finished"), theirs)
    owned(running(finished_run, runs_root, live_pid, "theirs-running"), theirs)
    at = app()
    at.session_state["genlab_owner"] = mine
    at.run()
    assert not at.exception
    keys = {b.key for b in at.button}
    assert {"resume-mine-finished", "delete-mine-finished"} <= keys
    assert not {k for k in keys if k and k.endswith(("theirs-finished", "theirs-running"))
                and not k.startswith("open-")}
    assert {"open-theirs-finished", "open-theirs-running"} <= keys       # everyone can watch
    at.query_params["run"] = "theirs-running"
    page = at.switch_page("pages/2_Live_run.py").run()
    assert not page.exception
    assert not [b for b in page.button if b.key == "stop-theirs-running"]
    assert "another visitor" in text_of(page)
    with pytest.raises(runner.RunnerError, match="another visitor"):
        runner.delete_run(runs_root / "theirs-finished", settings, owner=mine)


def test_a_paused_run_says_so_and_can_still_be_stopped(runs_root, finished_run, live_pid):
    run = running(finished_run, runs_root, live_pid, name="tiny-paused")
    runs.write_status(run, "running", step=4, total_steps=6, paused=True, **runs.process_identity(live_pid))
    at = app().run()
    assert not at.exception
    assert "[paused at step 4]" in text_of(at) and "stop-tiny-paused" in {b.key for b in at.button}
