"""The explorer for models with sampling knobs and trajectories (HasSamplingKnobs, HasTrajectory), picked by
capability from the registry and trained 2 steps: knobs that change only what they name, the cached
trajectory scrubber, the guidance and steps sweeps, deterministic slerp frames, hostile knob values, and a
model without these capabilities looking as before. Driven through gradio_client against a launched Blocks."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab import latent as L
from genlab import train
from genlab.checkpoint import load, save_checkpoint
from genlab.models import MODELS, HasSamplingKnobs, HasTrajectory, build_model, has_classes
from helpers import tiny_config
from picks import GAN_PAIR

TRAJECTORY = sorted(name for name, cls in MODELS.items() if issubclass(cls, HasTrajectory))
KNOB_VIEWS = 8           # /select_model's outputs before the last the API shows: steps, sampler, guidance, ...


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    gradio_client = pytest.importorskip("gradio_client")
    from genlab.explorer import build_explorer
    from genlab.settings import Settings
    from support import free_port
    root = tmp_path_factory.mktemp("explorer-diffusion")
    models = {}
    for i, name in enumerate(TRAJECTORY):         # lr 1e-2: two steps move the weights visibly
        train(tiny_config(name, {"lr": 1e-2}, steps=2, sample_every=100), root / "runs" / f"traj{i}")
        models[name] = f"runs/traj{i}"
    save_checkpoint(root / "checkpoints" / "plain.safetensors", build_model(GAN_PAIR, dict(MODELS[GAN_PAIR].tiny)),
                    {"step": 1})
    demo = build_explorer(Settings(checkpoints_dir=root / "checkpoints", runs_root=root / "runs"))
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield {"client": gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False), "models": models,
               "root": root}
    finally:
        demo.close()


def controls(seed=0, label=3, steps=2, sampler=None, guidance=1.0):
    """The explorer's control values in API order: seed, class, 8 z, 4 categorical, 16 continuous, knobs."""
    from genlab.explorer import MAX_CATEGORICAL, MAX_CONTINUOUS, MAX_Z_SLIDERS
    return [seed, label, *[0] * (MAX_Z_SLIDERS + MAX_CATEGORICAL + MAX_CONTINUOUS), steps, sampler, guidance]


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def loaded(app, name):
    return load(app["root"] / app["models"][name] / "checkpoints" / "latest.safetensors")


def samplers(app, name):
    return loaded(app, name).sampling_knobs()["sampler"]["choices"]


@pytest.mark.parametrize("name", TRAJECTORY)
def test_selecting_shows_the_knobs_and_the_denoising_tab(app, name):
    out = app["client"].predict(app["models"][name], 0, api_name="/select_model")
    steps, sampler, guidance, scrub, scrub_image, caption = out[-KNOB_VIEWS - 1:-KNOB_VIEWS + 5]
    model = loaded(app, name)
    assert steps["visible"] and sampler["visible"]
    assert steps["value"] == model.config.sampling_steps and (steps["minimum"], steps["maximum"]) == (1, 100)
    assert [c[1] for c in sampler["choices"]] == list(model.sampling_knobs()["sampler"]["choices"])
    assert guidance["visible"] == has_classes(model)
    assert scrub["maximum"] == model.config.sampling_steps and Path(scrub_image).exists()
    assert caption.startswith(f"step {model.config.sampling_steps} of {model.config.sampling_steps}")


def test_a_model_without_knobs_looks_as_before(app):
    out = app["client"].predict("checkpoints/plain", 0, api_name="/select_model")
    steps, sampler, guidance, scrub, scrub_image = out[-KNOB_VIEWS - 1:-KNOB_VIEWS + 4]
    assert not (steps["visible"] or sampler["visible"] or guidance["visible"]) and scrub_image is None
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="no sampling trajectory"):
        app["client"].predict("checkpoints/plain", 0, *controls(), api_name="/trajectory")
    with pytest.raises(AppError, match="no guidance knob"):
        app["client"].predict("checkpoints/plain", *controls(), api_name="/guidance_sweep")
    image, _ = app["client"].predict("checkpoints/plain", *controls(sampler="not one"), api_name="/generate")
    assert Path(image).exists()                                 # knob values are ignored, not refused


@pytest.mark.parametrize("name", TRAJECTORY)
def test_a_knob_changes_only_what_it_names(app, name):
    client, source, first, second = app["client"], app["models"][name], *samplers(app, name)[:2]
    generate = lambda **k: pixels(client.predict(source, *controls(**dict(dict(sampler=first), **k)),  # noqa: E731
                                                 api_name="/generate")[0])
    base = generate()
    assert np.array_equal(base, generate())                     # the same seed and knobs: the same image
    assert np.abs(base - generate(steps=5)).mean() > 0          # more steps from the same noise
    assert np.array_equal(base, generate())                     # ... and back: the noise was kept
    assert not np.array_equal(base, generate(seed=1))
    assert np.array_equal(generate(sampler=second), generate(sampler=second))   # stochastic ones too (fixed seed)
    if has_classes(loaded(app, name)):
        assert np.abs(base - generate(guidance=8.0)).mean() > 1


@pytest.mark.parametrize("name", TRAJECTORY)
def test_the_trajectory_scrubber_goes_from_noise_to_the_image(app, name):
    client, source, sampler = app["client"], app["models"][name], samplers(app, name)[0]
    knobs = controls(steps=4, sampler=sampler)
    image, _ = client.predict(source, *knobs, api_name="/generate")
    first, caption = client.predict(source, 0, *knobs, api_name="/trajectory")
    assert caption.startswith("step 0 of 4, noise level 1.000")
    last, caption = client.predict(source, 4, *knobs, api_name="/trajectory")
    assert caption.startswith("step 4 of 4, noise level 0.000")
    last = pixels(last)
    assert not np.array_equal(pixels(first), last)
    model = loaded(app, name)                                   # the scrubber's noise is the generator's
    latents = L.compose_latents(model.latent_spec(), 0, label=3)
    frames = L.trajectory_frames(model, latents, L.knob_values(model, {"steps": 4, "sampler": sampler}))
    assert np.array_equal(frames[-1][1], L.generate_images(model, latents, {"steps": 4, "sampler": sampler})[0])
    assert np.array_equal(frames[-1][1], frames[-1][2])                        # the end: its own prediction
    from genlab.explorer import trajectory_view
    assert np.array_equal(last, trajectory_view(frames, 4)[0].astype(int))     # what the scrubber showed
    assert trajectory_view(frames, 10 ** 9)[1].startswith("step 4 of 4")        # clamped
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError):                                # refused before the handler runs
        client.predict(source, "a lot", *knobs, api_name="/trajectory")


def test_the_trajectory_cache_samples_once_per_knob_setting():
    from genlab.explorer import Loaded, TrajectoryCache
    name = TRAJECTORY[0]
    model = build_model(name, dict(MODELS[name].tiny)).eval()
    entry = Loaded("runs/x", model, model.latent_spec(), {}, 1)
    latents = L.compose_latents(entry.spec, 0, label=1)
    cache = TrajectoryCache(max_items=2)
    frames, cached = cache.frames(entry, latents, {"steps": 3})
    assert not cached and len(frames) == 4
    assert cache.frames(entry, latents, {"steps": 3}) == (frames, True)
    assert not cache.frames(entry, latents, {"steps": 2})[1]
    assert not cache.frames(entry, L.compose_latents(entry.spec, 1, label=1), {"steps": 3})[1]
    assert not cache.frames(entry, latents, {"steps": 3})[1]     # evicted: two kept


@pytest.mark.parametrize("name", TRAJECTORY)
def test_guidance_and_steps_sweeps_are_one_row_of_columns(app, name):
    client, source, model = app["client"], app["models"][name], loaded(app, name)
    side = model.config.image_size
    knobs = controls(sampler=samplers(app, name)[0])
    grid, caption = client.predict(source, *knobs, api_name="/steps_sweep")
    grid = pixels(grid)
    factor = grid.shape[0] // (side + 4)
    assert grid.shape[1] // factor == len(L.STEPS_SWEEP) * (side + 2) + 2 and "steps = 1, 2, 5" in caption
    if has_classes(model):
        grid, caption = client.predict(source, *knobs, api_name="/guidance_sweep")
        grid = pixels(grid)
        factor = grid.shape[0] // (side + 4)                     # one row, enlarged by an integer factor
        assert grid.shape[1] // factor == len(L.GUIDANCE_SWEEP) * (side + 2) + 2
        cell = (side + 2) * factor
        assert not np.array_equal(grid[:, :cell], grid[:, -cell:])           # w = 0 differs from w = 8


@pytest.mark.parametrize("name", TRAJECTORY)
def test_slerp_frames_are_deterministic_and_start_at_the_seed(app, name):
    client, source = app["client"], app["models"][name]
    knobs = controls(seed=3, sampler=samplers(app, name)[0])
    start = pixels(client.predict(source, 3, 4, 8, 0.0, *knobs, api_name="/frame"))
    assert np.array_equal(start, pixels(client.predict(source, 3, 4, 8, 0.0, *knobs, api_name="/frame")))
    assert np.array_equal(start, pixels(client.predict(source, *knobs, api_name="/generate")[0]))
    middle = pixels(client.predict(source, 3, 4, 8, 0.5, *knobs, api_name="/frame"))
    assert not np.array_equal(start, middle)


@pytest.mark.parametrize("name", TRAJECTORY)
def test_hostile_knob_values_get_one_clear_message(app, name):
    from gradio_client.exceptions import AppError
    client, source = app["client"], app["models"][name]
    with pytest.raises(AppError, match="sampler must be one of"):
        client.predict(source, *controls(sampler="../../etc/passwd"), api_name="/generate")
    with pytest.raises(AppError, match="maximum value 100"):                # the slider's own bound holds
        client.predict(source, *controls(steps=10 ** 6, sampler=samplers(app, name)[0]),
                       api_name="/generate")
    model = loaded(app, name)
    if has_classes(model):
        with pytest.raises(ValueError, match="guidance must be a number"):
            L.knob_values(model, {"guidance": float("nan")})
    assert L.knob_values(model, {"steps": 10 ** 6})["steps"] == 100          # clamped, not run
    assert isinstance(model, HasSamplingKnobs)


# ---------------------------------------------------------------- the live view: denoising strips
def test_a_run_with_a_trajectory_writes_a_strip_next_to_each_grid(app):
    from genlab import runs
    for name, source in app["models"].items():
        run_dir = app["root"] / source
        grids = [step for step, _ in runs.list_samples(run_dir)]
        strips = runs.list_samples(run_dir, "strip")
        assert grids and [step for step, _ in strips] == grids, name
        model = loaded(app, name)
        side, points = model.config.image_size + 2, min(8, model.config.sampling_steps + 1)
        assert Image.open(strips[-1][1]).size == (points * side, 2 * 3 * side)      # 3 seeds: x_t over x0_hat


def test_the_live_page_shows_the_newest_strip_of_a_trajectory_run(app, tmp_path, monkeypatch):
    import shutil
    from streamlit.testing.v1 import AppTest
    root = tmp_path / "runs"
    source = app["models"][TRAJECTORY[0]]
    shutil.copytree(app["root"] / source, root / "denoiser")
    for name, value in {"GENLAB_RUNS_ROOT": str(root), "GENLAB_DATA_ROOT": str(tmp_path / "data"),
                        "GENLAB_SECRET": "test-secret", "GENLAB_PLOTLY_JS": "/genlab-assets/plotly.min.js",
                        "GENLAB_SAMPLES_URL": "/genlab-runs"}.items():
        monkeypatch.setenv(name, value)
    for name in [n for n in __import__("os").environ if n.startswith("GENLAB_MAX_") or n == "GENLAB_PUBLIC"]:
        monkeypatch.delenv(name)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.query_params.update({"run": "denoiser"})
    at = at.run().switch_page("pages/2_Live_run.py").run()
    assert not at.exception
    [strip] = at.get("image")
    assert "denoising strip at step 2" in str(strip.proto)
    assert any("Denoising" in m.value for m in at.markdown)


def test_the_new_endpoints_refuse_unlisted_models_with_one_neutral_message(app):
    from gradio_client.exceptions import AppError
    from genlab.explorer import UNKNOWN_MODEL
    calls = {"/trajectory": lambda v: (v, 0, *controls()), "/guidance_sweep": lambda v: (v, *controls()),
             "/steps_sweep": lambda v: (v, *controls())}
    for value in [str(app["root"] / app["models"][TRAJECTORY[0]]), "runs/../runs/traj0", "/etc/passwd"]:
        for api_name, arguments in calls.items():
            with pytest.raises(AppError) as refused:
                app["client"].predict(*arguments(value), api_name=api_name)
            assert str(refused.value) == UNKNOWN_MODEL, (value, api_name)
