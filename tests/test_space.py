"""The Gradio Space (genlab/space.py) driven through gradio_client with the real `spaces` package
(no ZeroGPU here, so its decorator is effect-free): Train streams curves and grids from genlab's own
loop, the trained run is explorable and downloadable, the public caps and per-session ownership hold."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genlab import runs
from genlab.models import MODELS
from picks import GAN_PAIR, WITH_ENCODER
from support import free_port


def launched(settings, **options):
    """The Space launched on a free local port, and a gradio_client Client on it."""
    from gradio_client import Client
    from genlab.space import build_space
    demo = build_space(settings, **options)
    demo.queue()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    return demo, Client(f"http://127.0.0.1:{port}/", verbose=False)


def another_visitor(client):
    """A second client of the same server: a new session (gradio_client keeps one session per Client)."""
    from gradio_client import Client
    return Client(client.src, verbose=False)


def tiny_settings(root: Path, **caps):
    from genlab.space import space_settings
    settings = space_settings({"GENLAB_RUNS_ROOT": str(root / "runs"), "GENLAB_DATA_ROOT": str(root / "data"),
                               "GENLAB_CHECKPOINTS": str(root / "checkpoints")}, gpu=False)
    limits = dataclasses.replace(settings.limits, **dict(dict(max_steps=12, min_sample_every=4,
                                                              min_checkpoint_every=4), **caps))
    return dataclasses.replace(settings, limits=limits)


TINY_SCHEDULE = dict(log_every=2, sample_every=4, checkpoint_every=4)
TINY_FIELDS = {name: dict(cls.tiny) for name, cls in MODELS.items()}


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("space")
    (root / "checkpoints").mkdir()
    settings = tiny_settings(root, max_steps=40)        # ten grids: the stream cannot merge them all into one
    demo, client = launched(settings, model_fields=TINY_FIELDS, schedule=TINY_SCHEDULE, train_seconds=120)
    try:
        yield {"client": client, "settings": settings, "root": root}
    finally:
        demo.close()


def train_updates(client, model, dataset="synthetic"):
    """Every update the Train event streams: (status, curves, grid, explore, download); the session state
    is not sent to the client."""
    job = client.submit(model, dataset, api_name="/train")
    while not job.done():
        time.sleep(0.05)
    job.result()                                           # raises the run's refusal, if any
    return job.outputs()


def plotted(curves) -> list[dict]:
    """The rows of a LinePlot value as the client receives it."""
    value = curves.get("value", curves) if isinstance(curves, dict) else None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        return [dict(zip(value["columns"], row)) for row in value["data"]]
    return []


def test_train_streams_curves_and_grids_then_explores_and_downloads(space):
    client, settings = space["client"], space["settings"]
    updates = train_updates(client, GAN_PAIR)
    with_curves = [u for u in updates if plotted(u[1])]
    with_grids = [u for u in updates if isinstance(u[2], str) and Path(u[2]).is_file()]
    assert len(with_curves) >= 2 and len(with_grids) >= 2, [u[0] for u in updates]
    steps = sorted({row["step"] for u in with_curves for row in plotted(u[1])})
    assert steps[-1] > steps[0]                            # the curves grew while it trained
    series = {row["series"] for row in plotted(with_curves[-1][1])}
    assert {"loss/d", "loss/g"} <= series
    first, last = np.asarray(Image.open(with_grids[0][2])), np.asarray(Image.open(with_grids[-1][2]))
    assert first.shape == last.shape and not np.array_equal(first, last)   # the grid changed as it learned

    status = updates[-1][0]
    [info] = runs.list_runs(Path(settings.runs_root))                 # the session's state stays on the server
    run = info.name
    assert "finished" in status and run in status
    run_dir = Path(settings.runs_root) / run
    assert runs.read_status(run_dir)["step"] == settings.limits.max_steps
    assert len(runs.read_metrics(run_dir)) >= 2 and len(runs.list_samples(run_dir)) >= 2
    assert len(json.loads((run_dir / "owner.json").read_text())["owner_sha256"]) == 64   # owned by the session

    download = updates[-1][-1]                             # the DownloadButton's update (buttons send none)
    assert download["visible"] and download["value"].endswith(".safetensors")
    from genlab.checkpoint import read_header
    header = read_header(download["value"])                # inference only: the critic is left out
    assert header["step"] == settings.limits.max_steps and set(MODELS[GAN_PAIR].training_only) <= set(header["dropped"])

    # "Explore it" puts this session's run into the explorer; its generator answers the sliders
    dropdown = client.predict(api_name="/explore")
    assert dropdown["value"] == f"runs/{run}" and f"runs/{run}" in [value for _, value in dropdown["choices"]]
    info = client.predict(f"runs/{run}", 0, api_name="/select_model")[0]
    assert GAN_PAIR in info and f"step {settings.limits.max_steps}" in info
    from genlab.explorer import MAX_CATEGORICAL, MAX_CONTINUOUS, MAX_Z_SLIDERS
    zeros = [0] * (MAX_Z_SLIDERS + MAX_CATEGORICAL + MAX_CONTINUOUS)
    image, timing = client.predict(f"runs/{run}", 0, 0, *zeros, api_name="/generate")   # source, seed, class, ...
    assert np.asarray(Image.open(image)).std() > 0 and "ms" in timing


def test_explore_button_needs_this_sessions_trained_run(space):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="train a model first"):
        another_visitor(space["client"]).predict(api_name="/explore")


def test_a_visitor_cannot_stop_a_run_it_has_no_session_for(space):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="no run to stop"):
        another_visitor(space["client"]).predict(api_name="/stop")


def test_refusals_are_one_line(space):
    from gradio_client.exceptions import AppError
    client = space["client"]
    with pytest.raises(AppError, match="list of choices|choose a model"):
        client.predict("../../etc", "synthetic", api_name="/train")
    with pytest.raises(AppError, match="list of choices|choose a data set"):
        client.predict(GAN_PAIR, "imagefolder", api_name="/train")


def test_the_space_caps_refuse_a_model_too_large(tmp_path):
    from gradio_client.exceptions import AppError
    settings = tiny_settings(tmp_path, max_parameters=10)
    demo, client = launched(settings, model_fields=TINY_FIELDS, schedule=TINY_SCHEDULE)
    try:
        with pytest.raises(AppError, match="max_parameters"):
            client.predict(WITH_ENCODER, "synthetic", api_name="/train")
    finally:
        demo.close()
    assert not (tmp_path / "runs").exists() or not runs.list_runs(tmp_path / "runs")


def test_at_most_max_active_runs_at_once(tmp_path):
    """A run already training (here: marked so by this process) fills the one slot; a Train is refused."""
    from genlab.space import reserve_run, run_config, space_schedule
    from genlab import runner
    from gradio_client.exceptions import AppError
    settings = tiny_settings(tmp_path)
    owner = runner.new_owner_token(settings)
    busy = reserve_run(run_config(GAN_PAIR, "synthetic", settings, space_schedule(False), TINY_FIELDS[GAN_PAIR]),
                       settings, owner)
    assert runs.is_active(runs.read_status(busy))
    demo, client = launched(settings, model_fields=TINY_FIELDS, schedule=TINY_SCHEDULE)
    try:
        with pytest.raises(AppError, match="max_active_runs"):
            client.predict(GAN_PAIR, "synthetic", api_name="/train")
    finally:
        demo.close()


def test_space_settings_are_public_with_the_space_caps_and_env_overrides():
    from genlab.space import TRAIN_SECONDS, space_settings
    settings = space_settings({"GENLAB_MAX_STEPS": "77"}, gpu=False)
    assert settings.public and settings.limits.builtin_data_only
    assert settings.limits.max_steps == 77 and settings.limits.max_run_seconds == TRAIN_SECONDS
    assert space_settings({}, gpu=True).limits.max_active_runs > space_settings({}, gpu=False).limits.max_active_runs


def test_bundle_writes_a_gradio_space_folder(tmp_path):
    from genlab.space import SPACE_APP, bundle, read_front_matter
    out = bundle(tmp_path / "space")
    meta = read_front_matter(out / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == SPACE_APP and (out / SPACE_APP).is_file()
    import gradio
    assert meta["sdk_version"] == gradio.__version__
    from huggingface_hub import SpaceCard                  # the Hub's own parser of the card
    card = SpaceCard.load(out / "README.md").data
    assert (card.sdk, card.app_file, card.python_version) == ("gradio", SPACE_APP, "3.10")
    requirements = (out / "requirements.txt").read_text()
    assert (out / "genlab" / "space.py").is_file() and "spaces" in requirements and "streamlit" not in requirements
    assert "torch" in requirements and not (out / "runs").exists()
    assert not list(out.rglob("__pycache__"))


@pytest.mark.slow
@pytest.mark.data
def test_the_gan_pair_on_mnist_for_60_seconds_on_this_cpu(tmp_path, mnist_data_root):
    """The Space's default Train on the CPU: 60 s (data loading included) of the full-size unconditional
    GAN pair (today DCGAN) on MNIST at its default batch; prints the steps and images/s it reached."""
    from genlab.space import space_schedule, space_settings
    settings = space_settings({"GENLAB_RUNS_ROOT": str(tmp_path / "runs"), "GENLAB_DATA_ROOT": str(mnist_data_root),
                               "GENLAB_CHECKPOINTS": str(tmp_path / "checkpoints")}, gpu=False)
    demo, client = launched(settings, schedule=space_schedule(False))
    try:
        started = time.monotonic()
        updates = train_updates(client, GAN_PAIR, "mnist")
        wall = time.monotonic() - started
    finally:
        demo.close()
    [info] = runs.list_runs(Path(settings.runs_root))
    run_dir = info.path
    status, metrics = runs.read_status(run_dir), runs.read_metrics(run_dir)
    print(f"\n{GAN_PAIR} on MNIST, 60 s on this CPU: {status['step']} steps, "
          f"{metrics[-1]['images_per_s']:.0f} images/s (last log), wall {wall:.0f} s, "
          f"{len({Path(u[2]).name for u in updates if isinstance(u[2], str)})} distinct grids streamed, "
          f"state {status['state']}")
    assert status["state"] == "stopped" and "time limit" in status["stop_reason"]
    assert status["step"] >= 2 * space_schedule(False)["log_every"] and runs.checkpoint_path(run_dir).exists()


def test_one_run_per_session_and_its_stop_button(tmp_path):
    """While a session's run trains, the same session's Train is refused (another one may start up to
    max_active_runs); Stop ends it with a checkpoint, and only for its own session."""
    from gradio_client.exceptions import AppError
    settings = tiny_settings(tmp_path, max_steps=2000, max_active_runs=2)
    demo, client = launched(settings, model_fields=TINY_FIELDS, schedule=TINY_SCHEDULE, train_seconds=120)
    try:
        job = client.submit(GAN_PAIR, "synthetic", api_name="/train")
        deadline = time.monotonic() + 90
        while not any("running" in str(u[0]) for u in job.outputs()):
            assert time.monotonic() < deadline and not job.done(), "the run did not start"
            time.sleep(0.1)
        with pytest.raises(AppError, match="still training"):
            client.predict(GAN_PAIR, "synthetic", api_name="/train")
        with pytest.raises(AppError, match="no run to stop"):
            another_visitor(client).predict(api_name="/stop")
        assert "Stopping" in client.predict(api_name="/stop")
        job.result()
    finally:
        demo.close()
    [info] = runs.list_runs(Path(settings.runs_root))
    assert info.status["state"] == "stopped" and info.status["step"] < 2000
    assert runs.checkpoint_path(info.path).exists()


def test_train_events_run_whole_in_a_forked_worker(tmp_path):
    """ZeroGPU's shape: the decorated generator runs in a forked process (reserve, train, end there) and
    only its small events cross back; the parent then reads a finished, unlocked run folder."""
    import multiprocessing
    from genlab import runner
    from genlab.space import run_config, train_events
    settings = tiny_settings(tmp_path)
    config = run_config(GAN_PAIR, "synthetic", settings, TINY_SCHEDULE, TINY_FIELDS[GAN_PAIR])
    owner = runner.new_owner_token(settings)
    context = multiprocessing.get_context("fork")
    events = context.Queue()

    def worker():
        for event in train_events(config, 120.0, settings, owner):
            events.put(event)
        events.put(None)

    process = context.Process(target=worker)
    process.start()
    received = []
    while (event := events.get(timeout=120)) is not None:
        received.append(event)
    process.join(30)
    assert process.exitcode == 0
    kinds = ",".join(event["kind"] for event in received)
    assert received[0]["kind"] == "reserved" and "sample" in kinds and "end" in kinds
    run_dir = Path(settings.runs_root) / received[0]["run"]
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["pid"] == process.pid and runs.lock_holder(run_dir) is None
    assert runner.can_control(run_dir, settings, owner)


def test_the_documented_front_matters_are_the_real_ones():
    """docs/deployment.md shows the Gradio card `front_matter()` writes and the README's Docker card."""
    from genlab.settings import REPO
    from genlab.space import front_matter, read_front_matter
    doc = (REPO / "docs" / "deployment.md").read_text()
    assert front_matter() in doc
    docker = read_front_matter(REPO / "README.md")
    assert docker["sdk"] == "docker" and docker["app_port"] == 7860
    assert (REPO / "README.md").read_text().split("---\n")[1] in doc
    assert '"--port", "7860"' in (REPO / "Dockerfile").read_text()


def test_a_run_that_cannot_load_its_data_ends_failed_with_one_line(tmp_path):
    """MNIST absent from a data root that cannot be made (under a file), so neither found nor
    downloaded, with or without a connection: the status says why, nothing is downloadable."""
    (tmp_path / "a-file").write_text("")
    settings = dataclasses.replace(tiny_settings(tmp_path), data_root=tmp_path / "a-file" / "data")
    demo, client = launched(settings, model_fields=TINY_FIELDS, schedule=TINY_SCHEDULE)
    try:
        updates = train_updates(client, GAN_PAIR, "mnist")
    finally:
        demo.close()
    status = updates[-1][0]
    assert "failed" in status and "MNIST" in status and "Traceback" not in status
    assert updates[-1][-1]["visible"] is False
