"""The Live run page: early sample grids and the step between log steps, the confined sample route,
the view in the URL, curves of runs of different families, config diff and GIF export (AppTest and unit)."""
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from genlab import runs, train
from genlab.dashboard import RUN_COLORS, curves_figure
from genlab.live_view import config_diff, grid_gif, run_names, sample_file, sample_route, view_from_query
from genlab.settings import Settings
from genlab.training import distributed
from genlab.training.plan import Plan
from genlab.training.state import TrainState
from genlab.training.tasks import Tasks
from helpers import tiny_config
from picks import GAN_PAIR, ONE_NETWORK

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Two real tiny runs of different families (a GAN pair and a one-network model)."""
    root = tmp_path_factory.mktemp("trained")
    made = {}
    for name, model in (("gan-run", GAN_PAIR), ("one-run", ONE_NETWORK)):
        train(tiny_config(model, steps=6, log_every=2, sample_every=3, checkpoint_every=3, seed=1), root / name)
        made[name] = root / name
    return made


# ---------------------------------------------------------------- the loop's side
def test_grids_at_step_0_then_log_spaced_until_sample_every():
    plan = Plan(steps=130, log_every=10, sample_every=50, checkpoint_every=1000)
    assert [s for s in range(131) if plan.is_sample_step(s)] == [0, 1, 2, 4, 8, 16, 32, 50, 100]
    assert [s for s in range(1, 131) if "sample" in plan.due(s)] == [1, 2, 4, 8, 16, 32, 50, 100]
    assert all(plan.due(s)[-1] == "progress" for s in range(1, 131))
    assert not any(Plan(steps=9, log_every=1, sample_every=0, checkpoint_every=0).is_sample_step(s) for s in range(10))
    quiet = Plan(steps=130, log_every=10, sample_every=50, checkpoint_every=1000, early_grids=False)
    assert [s for s in range(131) if quiet.is_sample_step(s)] == [0, 50, 100]


def test_a_new_run_draws_its_first_grid_before_the_first_step(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(ONE_NETWORK, steps=12, sample_every=10, log_every=12, checkpoint_every=12), run)
    assert [s for s, _ in runs.list_samples(run)] == [0, 1, 2, 4, 8, 10, 12]


def test_progress_writes_the_step_between_log_steps_at_most_once_a_second(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    plan = Plan(steps=100, log_every=50, sample_every=50, checkpoint_every=100)
    tasks = Tasks(run, None, {}, plan, distributed.Distributed(), lambda kind, payload: None, None, 0, 1)
    state = TrainState(rng=None, optimizers={}, step=7)
    tasks.status_written -= 10.0                         # the last write was long ago: due
    tasks.progress(state)
    assert runs.read_json(run / "status.json")["step"] == 7
    state.step = 8
    tasks.progress(state)                                # just written: not again within the second
    assert runs.read_json(run / "status.json")["step"] == 7


# ---------------------------------------------------------------- the sample route
def test_sample_files_are_confined_to_run_folders(tmp_path, trained):
    root = tmp_path / "runs"
    shutil.copytree(trained["gan-run"], root / "gan-run")
    (root / "not-a-run" / "samples").mkdir(parents=True)
    (root / "not-a-run" / "samples" / "step_000000.png").write_bytes(b"png")
    outside = tmp_path / "secret"
    (outside / "samples").mkdir(parents=True)
    (outside / "config.json").write_text("{}")
    (outside / "samples" / "step_000000.png").write_bytes(b"secret")
    (root / "linked").symlink_to(outside)
    (root / "gan-run" / "samples" / "step_000099.png").symlink_to(outside / "samples" / "step_000000.png")
    assert sample_file(root, "gan-run", "step_000000.png") == (root / "gan-run" / "samples" / "step_000000.png").resolve()
    for run, file in [("gan-run", "../config.json"), ("..", "step_000000.png"), (".hidden", "step_000000.png"),
                      ("gan-run", "step_000000.PNG"), ("gan-run", "step_1.png"), ("not-a-run", "step_000000.png"),
                      ("linked", "step_000000.png"), ("gan-run", "step_000099.png"), ("gan-run", "step_000777.png"),
                      ("gan-run/samples", "step_000000.png"), ("", "")]:
        assert sample_file(root, run, file) is None, (run, file)


def test_the_sample_route_serves_grids_and_nothing_else(tmp_path, trained):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    root = tmp_path / "runs"
    shutil.copytree(trained["gan-run"], root / "gan-run")
    client = TestClient(Starlette(routes=[sample_route(Settings(runs_root=root))]))
    ok = client.get("/genlab-runs/gan-run/samples/step_000003.png?v=1")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png" and ok.content[:4] == b"\x89PNG"
    assert "immutable" in ok.headers["cache-control"]
    for path in ["/genlab-runs/gan-run/samples/step_000004.png", "/genlab-runs/gan-run/samples/..%2Fconfig.json",
                 "/genlab-runs/..%2F..%2Fetc/samples/step_000003.png", "/genlab-runs/gan-run/config.json"]:
        assert client.get(path).status_code == 404, path


# ---------------------------------------------------------------- the view, compare, export
def test_the_view_comes_from_the_url_and_bad_values_are_reported():
    view = view_from_query({"smooth": "0.85", "logy": "1", "step": "300", "overlay": "a,b"})
    assert (view.smoothing, view.log_y, view.step, view.overlay, view.problems) == (0.85, True, 300, ["a", "b"], [])
    bad = view_from_query({"smooth": "nan", "step": "-3"})
    assert (bad.smoothing, bad.step) == (0.6, None) and len(bad.problems) == 2
    assert "smooth" in bad.problems[0] and "step" in bad.problems[1]


def test_config_diff_lists_only_the_fields_that_differ():
    a = {"train": {"model": "m1", "lr": 0.1, "steps": 5}, "model": {"z_dim": 8}}
    b = {"train": {"model": "m2", "lr": 0.1, "steps": 5}, "model": {"width": 4}}
    rows = config_diff({"A": a, "B": b})
    assert [r["field"] for r in rows] == ["model.width", "model.z_dim", "train.model"]
    assert rows[2] == {"field": "train.model", "A": "m1", "B": "m2"} and rows[0]["A"] == "–"


def test_grid_gif_has_one_labelled_frame_per_grid_up_to_the_cap(trained):
    from PIL import Image
    samples = runs.list_samples(trained["gan-run"])
    assert len(samples) == 5                                       # 0, 1, 2, 3, 6
    with Image.open(io.BytesIO(grid_gif(trained["gan-run"]))) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5
    with Image.open(io.BytesIO(grid_gif(trained["gan-run"], max_frames=3))) as gif:
        assert gif.n_frames == 3


def test_runs_of_different_families_get_their_own_panels_and_one_legend_entry_each(trained):
    series = {name: runs.read_metrics(path) for name, path in trained.items()}
    fig = curves_figure(series, smoothing=0.5, colors={"gan-run": "#111111", "one-run": "#222222"})
    data, layout = fig["data"], fig["layout"]
    gan_keys = {k for r in series["gan-run"] for k in r} - {"step", "time", "epoch", "images_per_s"}
    one_keys = {k for r in series["one-run"] for k in r} - {"step", "time", "epoch", "images_per_s"}
    assert gan_keys.isdisjoint(one_keys)                           # the families log different metrics
    panels = {}                                                    # y axis -> runs drawn on it
    for trace in data:
        panels.setdefault(trace["yaxis"], set()).add(trace["legendgroup"])
    for axis, drawn in panels.items():
        title = layout["yaxis" + axis[1:]]["title"]["text"]
        assert drawn == ({"gan-run"} if title in gan_keys else {"one-run"}), title
    assert len(panels) == len(gan_keys) + len(one_keys)
    assert sorted(t["legendgroup"] for t in data if t["showlegend"]) == ["gan-run", "one-run"]
    assert {t["line"]["color"] for t in data if t["legendgroup"] == "gan-run"} == {"#111111"}
    for trace in data:
        if "meta" in trace:                                        # a smoothed line names its raw line
            raw = data[trace["meta"]["raw"]]
            assert raw["x"] == trace["x"] and raw["legendgroup"] == trace["legendgroup"] and raw["opacity"] < 1
    assert all(layout[a]["title"]["text"] == "step" for a in layout if a.startswith("xaxis"))
    assert layout["hovermode"] == "x unified" and layout["modebar"]["orientation"] == "v"
    domains = [layout[a]["domain"] for a in layout if a.startswith("yaxis")]
    assert all(0 <= low < high <= 1 for low, high in domains)      # every panel on the page, none overlapping
    boxes = [(tuple(layout["x" + a[1:]]["domain"]), tuple(layout[a]["domain"])) for a in layout if a.startswith("yaxis")]
    assert len(set(boxes)) == len(boxes)


def test_the_curves_route_serves_run_folders_of_the_runs_root_and_nothing_else(tmp_path, trained):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    from genlab.dashboard import curves_route
    root = tmp_path / "runs"
    for name, path in trained.items():
        shutil.copytree(path, root / name)
    (tmp_path / "outside").mkdir()
    shutil.copytree(trained["gan-run"], tmp_path / "outside" / "run")
    (root / "linked").symlink_to(tmp_path / "outside" / "run")
    client = TestClient(Starlette(routes=[curves_route(Settings(runs_root=root))]))
    ok = client.get("/genlab-curves?runs=gan-run,one-run&v=1")
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    assert {t["legendgroup"] for t in ok.json()["data"]} == {"gan-run", "one-run"}
    for runs_query in ["..", "../runs/gan-run", ".genlab", "%2Fetc", "gan-run,x%00y", "linked", "",
                       ",".join(["gan-run"] * 9), "gan-run,nope"]:
        assert client.get(f"/genlab-curves?runs={runs_query}").status_code == 404, runs_query


def test_run_names_lists_run_folders_newest_first(tmp_path, trained):
    root = tmp_path / "runs"
    shutil.copytree(trained["gan-run"], root / "older")
    shutil.copytree(trained["one-run"], root / "newer")
    os.utime(root / "older" / "config.json", (1, 1))
    (root / ".hidden").mkdir()
    (root / "no-config").mkdir()
    assert run_names(root) == ["newer", "older"]


# ---------------------------------------------------------------- the page (AppTest)
def live_page(query: dict) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.query_params.update(query)
    return at.run().switch_page("pages/2_Live_run.py").run()


def test_served_page_sends_every_grid_of_every_run_to_one_client_side_slider(runs_root, trained, monkeypatch):
    monkeypatch.setenv("GENLAB_PLOTLY_JS", "/genlab-assets/plotly.min.js")
    monkeypatch.setenv("GENLAB_SAMPLES_URL", "/genlab-runs")
    monkeypatch.setenv("GENLAB_CURVES_URL", "/genlab-curves")
    for name, path in trained.items():
        shutil.copytree(path, runs_root / name)
    at = live_page({"run": "gan-run", "overlay": "one-run", "smooth": "0.9", "logy": "1", "step": "2"})
    assert not at.exception
    payloads = [json.loads(c.proto.json) for c in at.get("bidi_component")]
    [curves] = [p for p in payloads if "url" in p]
    [grids] = [p for p in payloads if "runs" in p]
    [status] = [p for p in payloads if "header" in p]
    assert curves["poll"] == grids["poll"] == status["poll"] == "/genlab-live?runs=gan-run,one-run"   # one poll
    assert status["header"]["name"] == "gan-run" and status["header"]["badge"] == "finished"
    assert not at.get("progress")                     # the status line is the browser's, updated by the poll
    assert (curves["smoothing"], curves["log_y"]) == (0.9, True)
    assert grids["step"] == 2 and [r["name"] for r in grids["runs"]] == ["gan-run", "one-run"]
    assert grids["query"] == {"run": "gan-run", "overlay": "one-run"}          # the browser keeps them in the URL
    assert [r["color"] for r in grids["runs"]] == list(RUN_COLORS[:2])
    gan = grids["runs"][0]
    assert [step for step, _ in gan["frames"]] == [0, 1, 2, 3, 6]
    assert gan["frames"][0][1].startswith("/genlab-runs/gan-run/samples/step_000000.png?v=")
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    from genlab.dashboard import curves_route
    figure = TestClient(Starlette(routes=[curves_route(Settings(runs_root=runs_root))])).get(curves["url"]).json()
    colors = {t["legendgroup"]: t["line"]["color"] for t in figure["data"]}
    assert colors == {"gan-run": RUN_COLORS[0], "one-run": RUN_COLORS[1]}      # the same colours as the grids
    assert not at.get("image") and not at.get("plotly_chart")
    assert at.get("download_button")                                           # the GIF export
    assert any("train.model" in str(df.value) or "train.model" in str(df.value.to_dict())
               for df in at.dataframe)                                          # the config differences


def test_new_runs_appear_in_the_pickers_and_a_bad_url_is_one_line(runs_root, trained):
    shutil.copytree(trained["gan-run"], runs_root / "gan-run")
    at = live_page({"run": "gan-run", "smooth": "2", "step": "x"})
    assert not at.exception
    assert at.multiselect(key="run.overlay").options == []
    problems = [c.value for c in at.caption if "Ignored from the URL" in c.value]
    assert len(problems) == 2
    shutil.copytree(trained["one-run"], runs_root / "one-run")
    at.run()
    assert at.multiselect(key="run.overlay").options == ["one-run"]
    at.multiselect(key="run.overlay").select("one-run").run()
    assert not at.exception
    assert at.query_params["overlay"] == "one-run" and at.query_params["run"] == "gan-run"
    assert len(at.get("image")) == 2                                           # both runs' grids, side by side


def test_the_curves_url_changes_exactly_when_a_metrics_file_does(tmp_path, trained):
    from genlab.dashboard import curves_url, metrics_signature
    run_dir = tmp_path / "run"
    shutil.copytree(trained["gan-run"], run_dir)
    first = curves_url(metrics_signature([run_dir]), "/genlab-curves")
    assert curves_url(metrics_signature([run_dir]), "/genlab-curves") == first
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "loss/d": 1.0}\n')
    assert curves_url(metrics_signature([run_dir]), "/genlab-curves") != first


def test_the_live_poll_answers_for_run_folders_only_and_304_while_nothing_changed(tmp_path, trained):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    from genlab.live_view import live_route
    root = tmp_path / "runs"
    for name, path in trained.items():
        shutil.copytree(path, root / name)
    client = TestClient(Starlette(routes=[live_route(Settings(runs_root=root))]))
    first = client.get("/genlab-live?runs=gan-run,one-run")
    assert first.status_code == 200 and first.headers["etag"]
    live = first.json()
    assert live["header"]["name"] == "gan-run" and live["header"]["text"].startswith("step 6 / 6")
    assert [r["name"] for r in live["runs"]] == ["gan-run", "one-run"]
    assert [step for step, _ in live["runs"][0]["frames"]] == [0, 1, 2, 3, 6]
    assert live["curves"].startswith("/genlab-curves?runs=gan-run%2Cone-run&v=")
    same = client.get("/genlab-live?runs=gan-run,one-run", headers={"If-None-Match": first.headers["etag"]})
    assert same.status_code == 304 and not same.content
    with open(root / "gan-run" / "metrics.jsonl", "a") as f:      # a new metric line: a new answer
        f.write('{"step": 7, "loss/d": 1.0}\n')
    changed = client.get("/genlab-live?runs=gan-run,one-run", headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.json()["curves"] != live["curves"]
    (root / "gan-run" / "metrics.jsonl").unlink()                  # no metrics: no curves to load
    assert client.get("/genlab-live?runs=gan-run").json()["curves"] is None
    for runs_query in ["..", ".genlab", "%2Fetc", "gan-run,..%2F..", ",".join(["gan-run"] * 9), "nope", ""]:
        assert client.get(f"/genlab-live?runs={runs_query}").status_code == 404, runs_query


def test_the_page_key_changes_when_the_page_must_be_redrawn(tmp_path, trained):
    from genlab.live_view import header, page_key
    root = tmp_path / "runs"
    shutil.copytree(trained["gan-run"], root / "gan-run")
    run_dir = root / "gan-run"

    def key():
        return page_key([run_dir], root, header(run_dir)["key"])
    (run_dir / "metrics.jsonl").write_text("")                    # the file exists before its first line
    empty = key()
    assert key() == empty                                          # nothing changed, no rerun
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss/d": 1.0}\n')
    first_line = key()
    assert first_line != empty                                     # the curves replace "no metrics yet"
    with open(run_dir / "metrics.jsonl", "a") as f:                # later lines come by the poll alone
        f.write('{"step": 2, "loss/d": 1.0}\n')
    assert key() == first_line
    shutil.copytree(trained["one-run"], root / "one-run")          # a new run for the pickers
    assert key() != first_line


def test_the_status_line_keys_the_status_the_page_was_drawn_from(tmp_path, trained):
    """The page draws its buttons from one status.json read; if the process pauses before the status
    line is made, the line's key must still name the state drawn, or the poll never reruns the page."""
    from genlab.live_view import header
    run_dir = tmp_path / "gan-run"
    shutil.copytree(trained["gan-run"], run_dir)
    runs.write_status(run_dir, "running", step=90, paused=False)
    drawn = runs.read_status(run_dir)                              # the page draws Pause from this
    runs.write_status(run_dir, "running", step=90, paused=True)    # then the process pauses
    assert header(run_dir, drawn)["key"] != header(run_dir)["key"]   # the poll sees the change
    assert header(run_dir, drawn)["badge"] == "running" and header(run_dir)["badge"] == "paused at step 90"
