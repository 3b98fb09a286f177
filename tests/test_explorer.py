"""The latent explorer: its pure latent logic, then the Gradio app driven through gradio_client
against a launched Blocks on a free localhost port (each model, sweeps, slerp GIF, VAE encoding,
reloading a run that is still training)."""
import json
from pathlib import Path
import os
import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image

from genlab import latent as L
from genlab.checkpoint import save_checkpoint
from genlab.models import MODELS, build_model
from genlab.models.base import LatentSpec
from picks import CONDITIONAL, GAN_PAIR, ITERATIVE_SAMPLER, WITH_CODES, WITH_ENCODER

# Every registered model from its own tiny config, with twice as many z dims as sliders (MAX_Z_SLIDERS = 8),
# so the seed draws the dims without one.
TINY = {name: dict(MODELS[name].tiny, **({"z_dim": 16} if "z_dim" in MODELS[name].tiny else {}))
        for name in sorted(MODELS)}


def tiny_model(name: str, seed: int = 0):
    """A small model with PyTorch's default (variance-keeping) init, so every input moves the image."""
    torch.manual_seed(seed)
    model = build_model(name, dict(TINY[name], image_size=28, channels=1, num_classes=10))
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model.eval()


def write_checkpoint(path, name, seed=0):
    save_checkpoint(path, tiny_model(name, seed), {"step": 7, "train_config": {"dataset": "synthetic"}})


# ---------------------------------------------------------------- pure logic
def test_slerp_ends_and_keeps_norm():
    a, b = torch.randn(1, 64), torch.randn(1, 64)
    b = b / b.norm() * a.norm()
    assert torch.allclose(L.slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(L.slerp(a, b, 1.0), b, atol=1e-5)
    middle = L.slerp(a, b, 0.5)
    assert abs(middle.norm() - a.norm()) < 1e-4          # on the great circle, unlike a straight line
    assert (0.5 * (a + b)).norm() < a.norm() - 1e-3


def test_compose_latents_sets_the_controls():
    spec = LatentSpec(z_dim=10, num_classes=10, categorical=[10, 4], continuous=2)
    base = L.prior_latents(spec, 3)
    latents = L.compose_latents(spec, 3, z_head=[1.5, -2.0], label=7, cat=[9, 2.0], cont=[0.25, -0.5])
    assert latents["z"][0, :2].tolist() == [1.5, -2.0]
    assert torch.equal(latents["z"][0, 2:], base["z"][0, 2:])      # the rest comes from the seed
    assert latents["y"].tolist() == [7] and latents["cat"].tolist() == [[9, 2]]
    assert latents["cont"].tolist() == [[0.25, -0.5]]
    with pytest.raises(ValueError, match="no latent axis"):
        L.check_axis(spec, L.Axis("cont", 2))
    assert L.parse_axis("cat[1]") == L.Axis("cat", 1) and L.parse_axis("class") == L.Axis("y")


def test_sweep_grid_shape_and_columns_differ():
    model = tiny_model(WITH_CODES)
    base = [L.compose_latents(model.latent_spec(), 0)]
    grid = L.sweep_grid(model, base, L.Axis("cat", 0), 5, L.Axis("cont", 0))
    assert grid.shape == (5 * 30 + 2, 10 * 30 + 2, 1)             # rows: 5 cont values, cols: 10 categories
    first, second = grid[2:30, 2:30], grid[2:30, 32:60]
    assert np.abs(first.astype(int) - second).mean() > 0.1


def test_gif_has_every_frame_back_and_forth():
    frames = np.stack([np.full((8, 8, 1), 20 * i, np.uint8) for i in range(6)])
    gif = Image.open(__import__("io").BytesIO(L.encode_gif(frames)))
    assert gif.format == "GIF" and gif.n_frames == 6 + 4


def test_prepare_image_inverts_a_dark_digit_on_white():
    picture = np.full((56, 56, 3), 255, np.uint8)
    picture[14:42, 24:32] = 0                                        # a black "1" on white paper
    x = L.prepare_image(picture, channels=1, size=28)
    assert x.shape == (1, 1, 28, 28)
    assert x[0, 0, 0, 0] == -1 and x[0, 0, 14, 14] > 0.9              # background black, stroke white


# ---------------------------------------------------------------- the app through gradio_client
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from gradio_client import Client
    from genlab.explorer import build_explorer
    root = tmp_path_factory.mktemp("explorer")
    checkpoints = root / "checkpoints"
    for name in TINY:
        write_checkpoint(checkpoints / f"tiny-{name}.safetensors", name)
    run = root / "runs" / "live-dcgan"                                 # a run "still training" (our pid)
    write_checkpoint(run / "checkpoints" / "latest.safetensors", GAN_PAIR, seed=1)
    (run / "config.json").write_text(json.dumps({"train": {"model": GAN_PAIR}, "model": {}}))
    status = {"state": "running", "step": 7, "pid": os.getpid(), "host": socket.gethostname(),
              "heartbeat": time.time()}
    from genlab import runs
    if hasattr(runs, "process_identity"):                              # runs that check the process identity
        status.update(runs.process_identity(os.getpid()))
    (run / "status.json").write_text(json.dumps(status))
    (checkpoints / "examples").mkdir()
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit).save(checkpoints / "examples" / "one.png")
    from safetensors.torch import save_file                           # a non-generator file (like the judge)
    save_file({"w": torch.zeros(3)}, str(checkpoints / "judge.safetensors"), metadata={"judge": "{}"})
    outside = root / "elsewhere" / "secret.safetensors"                # a real checkpoint, not listed
    write_checkpoint(outside, GAN_PAIR)
    from genlab.settings import Settings
    demo = build_explorer(Settings(checkpoints_dir=checkpoints, runs_root=root / "runs"))
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield {"client": Client(f"http://127.0.0.1:{port}/", verbose=False), "checkpoints": checkpoints,
               "run": run, "outside": outside, "root": root}
    finally:
        demo.close()


def controls(seed=0, label=0, z=(), cat=(), cont=()):
    """The explorer's control values in API order: seed, class, 8 z, 4 categorical, 16 continuous."""
    from genlab.explorer import MAX_CATEGORICAL, MAX_CONTINUOUS, MAX_Z_SLIDERS
    pad = lambda values, n: list(values) + [0] * (n - len(values))          # noqa: E731
    return [seed, label, *pad(z, MAX_Z_SLIDERS), *pad(cat, MAX_CATEGORICAL), *pad(cont, MAX_CONTINUOUS)]


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def select(client, source):
    out = client.predict(source, 0, api_name="/select_model")
    assert "Cannot load" not in out[0], out[0]
    return out


def slider_changes() -> list[tuple[str, dict]]:
    """For each model, the controls its latent spec offers that should move its image."""
    changes = []
    for name in TINY:
        spec = tiny_model(name).latent_spec()
        if spec.num_classes:
            changes.append((name, {"label": 7}))
        if spec.categorical:
            changes.append((name, {"cat": [spec.categorical[0] - 1]}))
        if spec.continuous:
            changes.append((name, {"cont": [0, 1.0][:spec.continuous]}))
        if not (spec.num_classes or spec.categorical or spec.continuous):
            changes.append((name, {"z": [0, 0, 2.5]}))
    return changes


@pytest.mark.parametrize("name, change", slider_changes())
def test_each_model_a_slider_changes_the_image(app, name, change):
    client, source = app["client"], f"checkpoints/tiny-{name}"
    out = select(client, source)
    assert name in out[0]
    head = [u["value"] for u in out[1:9]]                                  # z sliders hold the seed's z
    before, timing = client.predict(source, *controls(z=head), api_name="/generate")
    assert "server time" in timing
    moved = dict(change, z=change.get("z", head[:1]) + head[len(change.get("z", head[:1])):])
    after, _ = client.predict(source, *controls(**moved), api_name="/generate")
    assert np.abs(pixels(before) - pixels(after)).mean() > 0.1
    again, _ = client.predict(source, *controls(z=head), api_name="/generate")
    assert np.array_equal(pixels(before), pixels(again))                  # same controls, same image


def test_controls_follow_the_latent_spec(app):
    client = app["client"]
    info = select(client, f"checkpoints/tiny-{WITH_CODES}")
    assert [u["visible"] for u in info[10:14]] == [True, False, False, False]      # one categorical code
    assert [u["visible"] for u in info[14:17]] == [True, True, False]               # two continuous codes
    assert info[9]["visible"] is False                                               # no class
    cgan = select(client, f"checkpoints/tiny-{CONDITIONAL}")
    assert cgan[9]["visible"] is True and len(cgan[9]["choices"]) == 10


def test_sweep_grid_of_infogan_codes(app):
    client, source = app["client"], f"checkpoints/tiny-{WITH_CODES}"
    select(client, source)
    grid = pixels(client.predict(source, "cat[0]", "cont[0]", 4, 1, *controls(), api_name="/sweep"))
    scale = grid.shape[1] // (10 * 30 + 2)
    assert grid.shape[:2] == ((4 * 30 + 2) * scale, (10 * 30 + 2) * scale)
    seeds = pixels(client.predict(source, "z[0]", "seeds", 5, 3, *controls(), api_name="/sweep"))
    assert seeds.shape[:2] == ((3 * 30 + 2) * (seeds.shape[1] // (5 * 30 + 2)), seeds.shape[1])


def test_slerp_frames_and_gif(app):
    client, source = app["client"], f"checkpoints/tiny-{GAN_PAIR}"
    select(client, source)
    start = pixels(client.predict(source, 3, 4, 8, 0.0, *controls(), api_name="/frame"))
    end = pixels(client.predict(source, 3, 4, 8, 1.0, *controls(), api_name="/frame"))
    assert np.abs(start - end).mean() > 0.1
    preview, gif_path = client.predict(source, 3, 4, 8, *controls(), api_name="/gif")
    gif = Image.open(gif_path)
    assert gif.format == "GIF" and gif.n_frames == 8 + 6


def test_vae_encodes_an_image_onto_the_sliders(app):
    from gradio_client import handle_file
    client, source = app["client"], f"checkpoints/tiny-{WITH_ENCODER}"
    select(client, source)
    out = client.predict(source, handle_file(str(app["checkpoints"] / "examples" / "one.png")),
                         api_name="/encode")
    model = tiny_model(WITH_ENCODER)
    digit = np.asarray(Image.open(app["checkpoints"] / "examples" / "one.png"))
    expected = L.encode_image(model, L.prepare_image(digit, 1, 28))
    assert np.allclose(out[:8], expected[:8].numpy(), atol=2e-3)
    encoded = pixels(out[8])
    assert np.array_equal(encoded, pixels(out[9]))                        # reconstruction shown as the image


def test_encode_refused_for_a_gan(app):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    client, source = app["client"], f"checkpoints/tiny-{GAN_PAIR}"
    with pytest.raises(AppError, match="no encoder"):
        client.predict(source, handle_file(str(app["checkpoints"] / "examples" / "one.png")), api_name="/encode")


def test_a_training_run_is_listed_and_reloaded_when_its_checkpoint_changes(app):
    client, run = app["client"], app["run"]
    out = select(client, "runs/live-dcgan")
    assert out[-1]["value"] is True                                       # auto-reload on for a live run
    assert str(run) not in out[0] and "runs/live-dcgan" in out[0]         # named by its entry, not its path
    before, _ = client.predict("runs/live-dcgan", *controls(), api_name="/generate")
    info, _, _ = client.predict("runs/live-dcgan", *controls(), api_name="/reload")
    assert "(unchanged)" in info
    write_checkpoint(run / "checkpoints" / "latest.safetensors", GAN_PAIR, seed=2)   # "a newer step"
    info, after, _ = client.predict("runs/live-dcgan", *controls(), api_name="/reload")
    assert "(reloaded)" in info
    assert np.abs(pixels(before) - pixels(after)).mean() > 0.1


def test_unknown_hub_repo_gives_a_clear_message(app):
    client = app["client"]
    out = client.predict("hf://genlab-tests/does-not-exist", 0, api_name="/select_model")
    assert out[0].startswith("**Cannot load**")
    assert "Hub" in out[0] or "hub" in out[0]


# ---------------------------------------------------------------- only listed entries, one neutral refusal
def test_the_list_holds_generators_and_runs_only(app):
    from genlab.explorer import Catalog
    from genlab.settings import Settings
    keys = [key for _, key in Catalog(Settings(checkpoints_dir=app["checkpoints"],
                                               runs_root=app["root"] / "runs")).choices()]
    assert sorted(keys) == sorted([f"checkpoints/tiny-{name}" for name in TINY] + ["runs/live-dcgan"])


def unlisted_values(app):
    checkpoints = app["checkpoints"]
    return [str(checkpoints / f"tiny-{GAN_PAIR}.safetensors"),               # the listed file by its path
            f"checkpoints/tiny-{GAN_PAIR}.safetensors", f"checkpoints//tiny-{GAN_PAIR}", f"checkpoints/./tiny-{GAN_PAIR}",
            f"checkpoints/../checkpoints/tiny-{GAN_PAIR}", f"./checkpoints/tiny-{GAN_PAIR}", f"checkpoints/tiny-{GAN_PAIR} ",
            str(app["run"]), "runs/live-dcgan/", "runs/../runs/live-dcgan",
            str(app["outside"]), "/etc/passwd", "/nonexistent/x.safetensors", "checkpoints/judge",
            "runs/..", "hf:///etc", "hf://../../etc/x"]


@pytest.mark.slow
def test_unlisted_values_get_one_neutral_message_on_every_endpoint(app):
    from gradio_client.exceptions import AppError
    from genlab.explorer import UNKNOWN_MODEL
    client = app["client"]
    select(client, f"checkpoints/tiny-{GAN_PAIR}")                          # the sweep's axis choices of a model
    calls = {"/select_model": lambda v: (v, 0), "/generate": lambda v: (v, *controls()),
             "/frame": lambda v: (v, 0, 1, 8, 0.5, *controls()), "/gif": lambda v: (v, 0, 1, 8, *controls()),
             "/sweep": lambda v: (v, "z[0]", "seeds", 4, 2, *controls()),
             "/reload": lambda v: (v, *controls()), "/set_seed": lambda v: (v, *controls())}
    for value in unlisted_values(app):
        for api_name, arguments in calls.items():
            with pytest.raises(AppError) as refused:
                client.predict(*arguments(value), api_name=api_name)
            assert str(refused.value) == UNKNOWN_MODEL, (value, api_name, str(refused.value))


def test_a_run_started_after_launch_is_listed_and_selectable(app):
    run = app["root"] / "runs" / "later-vae"
    write_checkpoint(run / "checkpoints" / "latest.safetensors", WITH_ENCODER)
    (run / "config.json").write_text(json.dumps({"train": {"model": WITH_ENCODER}, "model": {}}))
    (run / "status.json").write_text(json.dumps({"state": "finished", "step": 7}))
    assert WITH_ENCODER in select(app["client"], "runs/later-vae")[0]


def test_public_mode_turns_the_hub_off():
    import dataclasses
    from genlab.explorer import Catalog, UnknownModel
    from genlab.settings import PublicLimits, Settings
    local = Catalog(Settings())
    assert local.resolve("hf://user/genlab-mnist-dcgan").repo == "user/genlab-mnist-dcgan"
    public = Catalog(dataclasses.replace(Settings(), public=True, limits=PublicLimits.public_defaults()))
    with pytest.raises(UnknownModel):
        public.resolve("hf://user/genlab-mnist-dcgan")


# ---------------------------------------------------------------- the model cache
def loaded(key: str, nbytes: int):
    from genlab.explorer import Loaded
    return Loaded(key, torch.nn.Identity(), LatentSpec(z_dim=2), {}, None, nbytes)


def entry(key: str):
    from genlab.explorer import Entry
    return Entry(key, key)


def test_cache_is_lru_bounded_by_count_and_bytes():
    from genlab.explorer import ModelCache
    calls = []

    def loader(e, max_parameters):
        calls.append(e.key)
        return loaded(e.key, 100)
    cache = ModelCache(max_models=2, max_bytes=10_000, loader=loader)
    for key in ("a", "b", "a", "c"):                      # "a" used again: "b" is the least recent
        cache.get(entry(key))
    assert cache.keys() == ["a", "c"] and calls == ["a", "b", "c"]
    small = ModelCache(max_models=10, max_bytes=250, loader=loader)
    for key in ("a", "b", "c", "d"):
        small.get(entry(key))
    assert small.keys() == ["c", "d"] and small.nbytes() == 200


def test_cache_loads_a_real_checkpoint_and_counts_its_bytes(tmp_path):
    from genlab.explorer import Entry, ModelCache
    write_checkpoint(tmp_path / "v.safetensors", WITH_ENCODER)
    cache = ModelCache()
    got = cache.get(Entry("checkpoints/v", "v", tmp_path / "v.safetensors"))
    weights = sum(p.numel() * p.element_size() for p in got.model.parameters())
    assert got.nbytes >= weights > 0 and got.spec.z_dim == TINY[WITH_ENCODER]["z_dim"]
    assert cache.get(Entry("checkpoints/v", "v", tmp_path / "v.safetensors")) is got


@pytest.mark.parametrize("name", sorted({GAN_PAIR, WITH_ENCODER, ITERATIVE_SAMPLER}))
def test_a_loaded_model_serves_in_channels_last_with_the_same_images(tmp_path, name):
    """The explorer keeps CPU models' conv weights NHWC (faster oneDNN kernels); the images stay the model's."""
    from genlab.explorer import Entry, ModelCache
    write_checkpoint(tmp_path / "m.safetensors", name)
    got = ModelCache().get(Entry("checkpoints/m", "m", tmp_path / "m.safetensors"))
    convs = [p for p in got.model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    plain = tiny_model(name, 0).eval()
    rng_a, rng_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.no_grad():
        served, reference = got.model.sample(2, rng_a), plain.sample(2, rng_b)
    assert torch.allclose(served, reference, atol=1e-4)


def test_a_slow_load_does_not_block_another_entrys_render():
    """One visitor's model is still loading; another visitor's cached model keeps answering, and a
    second request for the loading entry waits for that one load instead of starting its own."""
    import threading
    from genlab.explorer import ModelCache
    release, started = threading.Event(), threading.Event()
    calls = []

    def loader(e, max_parameters):
        calls.append(e.key)
        if e.key == "slow":
            started.set()
            assert release.wait(30)
        return loaded(e.key, 10)
    cache = ModelCache(loader=loader)
    cache.get(entry("fast"))
    results = {}
    slow_threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, cache.get(entry("slow"))))
                    for i in range(2)]
    for thread in slow_threads:
        thread.start()
    assert started.wait(30)
    other = threading.Thread(target=lambda: results.__setitem__("fast", cache.get(entry("fast"))))
    other.start()
    other.join(10)
    fresh = threading.Thread(target=lambda: results.__setitem__("new", cache.get(entry("new"))))
    fresh.start()
    fresh.join(10)
    assert not other.is_alive() and not fresh.is_alive(), "a render waited for another entry's load"
    assert "slow" not in cache
    release.set()
    for thread in slow_threads:
        thread.join(30)
    assert results[0] is results[1] and calls.count("slow") == 1


# ---------------------------------------------------------------- uploads and exports
def test_uploads_are_size_capped_and_removed(tmp_path):
    import gradio.utils
    from genlab.explorer import read_upload
    folder = Path(gradio.utils.get_upload_folder()) / "genlab-test-upload"
    folder.mkdir(parents=True, exist_ok=True)
    picture = folder / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(picture)
    assert read_upload(picture, 10_000).shape == (28, 28, 3)
    assert not picture.exists()                                        # the temporary upload is gone
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(picture)
    with pytest.raises(ValueError, match="larger than"):
        read_upload(picture, 10)
    assert not picture.exists()
    garbage = tmp_path / "x.png"                                       # not in the upload folder: kept
    garbage.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not an image"):
        read_upload(garbage, 10_000)
    assert garbage.exists()


def test_old_gif_exports_are_pruned(tmp_path):
    from genlab.explorer import prune_files
    for i in range(5):
        (tmp_path / f"{i}.gif").write_bytes(b"x")
        os.utime(tmp_path / f"{i}.gif", ns=(i * 10 ** 9, i * 10 ** 9))
    prune_files(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.gif", "4.gif"]


def test_out_of_range_controls_are_clamped_not_crashes(app):
    client = app["client"]
    select(client, f"checkpoints/tiny-{CONDITIONAL}")
    image, _ = client.predict(f"checkpoints/tiny-{CONDITIONAL}", *controls(label=10 ** 6), api_name="/generate")
    assert Path(image).exists()
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="greater than maximum value 48"):   # the slider's own bound holds
        client.predict(f"checkpoints/tiny-{GAN_PAIR}", 0, 1, 10 ** 7, *controls(), api_name="/gif")
    with pytest.raises(AppError, match="invalid"):
        client.predict(f"checkpoints/tiny-{GAN_PAIR}", *controls(seed=10 ** 30), api_name="/generate")


def test_a_listed_run_with_a_hostile_header_is_refused_without_its_path(app):
    from safetensors.torch import save_file
    run = app["root"] / "runs" / "hostile"
    (run / "checkpoints").mkdir(parents=True)
    huge = {"format": 1, "model": WITH_CODES, "step": 1, "model_config": {
        "g_channels": 512, "d_channels": 512, "fc_width": 8192, "q_width": 4096, "image_size": 64, "channels": 3}}
    save_file({"model.x": torch.zeros(1)}, str(run / "checkpoints" / "latest.safetensors"),
              metadata={"genlab": json.dumps(huge)})
    (run / "config.json").write_text(json.dumps({"train": {"model": WITH_CODES}, "model": {}}))
    out = app["client"].predict("runs/hostile", 0, api_name="/select_model")
    assert out[0].startswith("**Cannot load** `runs/hostile`") and "parameters; at most" in out[0]
    assert str(app["root"]) not in out[0]
    image, _ = app["client"].predict(f"checkpoints/tiny-{GAN_PAIR}", *controls(), api_name="/generate")
    assert Path(image).exists()                                          # other entries keep answering
