"""The test-only toy (tests/toy_model.py: flow matching, an image-shaped latent, no classes, no encoder,
no likelihood) through every surface of genlab with no edit outside its own file: trained and resumed
on the synthetic set, evaluated by the metrics its capabilities select, exported, explored through
gradio_client against an in-process explorer (so the test's registration applies), saved for the Hub
and loaded back. One module-scoped run feeds every test; the toy is registered for the whole module."""
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab import runs
from genlab.models import HasCodes, HasEncoder, HasLatents, HasLikelihood, has_classes

import toy_model
from helpers import REPO, tiny_config

RUN_NAME = "toy-run"


@pytest.fixture(scope="module")
def registered():
    with toy_model.registered():
        yield toy_model.NAME


@pytest.fixture(scope="module")
def run(registered, tmp_path_factory):
    """A 4-step run of the toy on the synthetic set, resumed to 6 steps."""
    root = tmp_path_factory.mktemp("toy")
    path = root / "runs" / RUN_NAME
    config = tiny_config(registered, steps=4, log_every=2, sample_every=2, checkpoint_every=2)
    first = genlab.train(config, path)
    assert first["state"] == "finished" and first["step"] == 4
    resumed = genlab.resume(path, steps=6)
    assert resumed["state"] == "finished" and resumed["step"] == 6
    return path


def samples(model, n=6, seed=3):
    return model.sample(n, torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- train, resume
def test_the_toy_trains_and_a_resumed_run_continues(run):
    records = runs.read_metrics(run)
    assert [r["step"] for r in records] == [2, 4, 6]                  # the resume logged steps 5..6 on top
    assert all(math.isfinite(r["loss/total"]) for r in records)
    model = genlab.load(run)
    assert model.name == toy_model.NAME and model.checkpoint_header["step"] == 6
    assert isinstance(model, HasLatents) and not model.latent_spec().is_vector
    assert samples(model).shape == (6, 1, 28, 28)


# ---------------------------------------------------------------- evaluate
def expected_metrics(model, judged: bool) -> set:
    """The metrics the toy's capabilities select on 28x28 grayscale data, with a judge or without."""
    names = {"fid", "kid", "precision_recall", "mode_coverage"} if judged else set()
    if judged and has_classes(model):
        names.add("judge_accuracy")
    if isinstance(model, HasLikelihood):
        names |= {"elbo", "iwae"}
    if isinstance(model, HasCodes):
        names.add("categorical_accuracy")
    return names


def test_evaluation_runs_the_metrics_its_capabilities_select(run):
    from genlab.eval import TrainingEvaluator, evaluate_checkpoint, load_splits
    from genlab.judge import load_judge
    from genlab.metrics import METRICS, EvalContext, applicable, evaluate, quick_log
    report = evaluate_checkpoint(run, num_samples=200, seed=1)
    model = genlab.load(run)
    assert not (isinstance(model, HasLikelihood) or has_classes(model) or isinstance(model, HasCodes))
    # Synthetic blobs are no data set's digits: no judge reads them, and the report says why.
    assert report["judge"] is None and "no judge for synthetic" in report["skipped"]["judge metrics"]
    assert set(report["results"]) == expected_metrics(model, judged=False)
    assert TrainingEvaluator(model.checkpoint_header["train_config"], num_samples=200)(model) == {}
    # Handed a judge (MNIST's), the toy's capabilities select the judged metrics, and they run.
    train_data, test_data = load_splits(model.checkpoint_header["train_config"])
    context = EvalContext(model=model, train_images=train_data.images, test_images=test_data.images,
                          test_labels=test_data.labels, judge=load_judge(), num_samples=200, seed=1)
    selected = set(applicable(context)) - {"inception_fid"}
    assert selected == expected_metrics(model, judged=True) == {"fid", "kid", "precision_recall", "mode_coverage"}
    results = evaluate(context, sorted(selected))
    quick = quick_log(context)
    declared = {key for name in results if METRICS[name].quick for key in METRICS[name].log_keys.values()}
    assert "eval/fid" in quick and set(quick) == declared               # the quick keys the registry declares
    assert all(math.isfinite(value) for value in quick.values())
    for name, values in results.items():
        for key, value in values.items():
            if isinstance(value, float):
                assert math.isfinite(value), (name, key)


# ---------------------------------------------------------------- export
def load_export_tool():
    spec = importlib.util.spec_from_file_location("export_checkpoints", REPO / "tools" / "export_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_drops_the_training_only_weight_and_samples_the_same(run, tmp_path):
    full = genlab.load(run)
    assert full.training_only == ("loss_weight",)
    exported = genlab.load(genlab.export_checkpoint(run, tmp_path / "toy.safetensors", half=False,
                                                    drop=full.training_only))
    assert exported.checkpoint_header["dropped"] == ["loss_weight"]
    assert not any(key.startswith("loss_weight.") for key in exported.state_dict())
    assert torch.equal(samples(full), samples(exported))
    inference = genlab.load(load_export_tool().export_inference(run, tmp_path / "toy-fp16.safetensors"))
    assert inference.checkpoint_header["dropped"] == ["loss_weight"]
    assert not any(key.startswith("loss_weight.") for key in inference.state_dict())
    half = samples(inference)
    assert half.shape == (6, 1, 28, 28) and torch.isfinite(half).all()
    assert (half.float() - samples(full)).abs().mean() < 0.05        # fp16 weights, nearly the same images


# ---------------------------------------------------------------- explore through gradio_client
@pytest.fixture(scope="module")
def explorer(run, tmp_path_factory):
    from gradio_client import Client
    from genlab.explorer import build_explorer
    from genlab.settings import Settings
    from test_explorer import free_port
    demo = build_explorer(Settings(checkpoints_dir=tmp_path_factory.mktemp("no-checkpoints"),
                                   runs_root=run.parent))
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def test_an_image_shaped_latent_is_seeded_and_slerped_whole_without_per_dimension_controls():
    from genlab import latent as L
    from genlab.models import LatentSpec
    spec = LatentSpec(z_dim=2 * 4 * 4, z_shape=(2, 4, 4))
    assert L.z_sliders(spec) == 0 and L.sweep_axes(spec) == []
    with pytest.raises(ValueError, match="no latent axis z"):
        L.check_axis(spec, L.Axis("z", 0))
    latents = L.compose_latents(spec, 3, z_head=[9.0, 9.0])                   # the head is ignored
    assert latents["z"].shape == (1, 2, 4, 4) and torch.equal(latents["z"], L.prior_latents(spec, 3)["z"])
    a, b = L.prior_latents(spec, 1)["z"], L.prior_latents(spec, 2)["z"]
    b = b / b.norm() * a.norm()
    middle = L.slerp(a, b, 0.5)
    assert middle.shape == a.shape and abs(middle.norm() - a.norm()) < 1e-4      # on the sphere of the whole z
    assert L.interpolation_latents({"z": a}, b, 5)["z"].shape == (5, 2, 4, 4)


def test_the_explorer_lists_and_renders_the_toy_by_seed_without_z_sliders(explorer):
    from gradio_client.exceptions import AppError
    from test_explorer import controls
    source = f"runs/{RUN_NAME}"
    info = explorer.predict(source, 0, api_name="/select_model")
    assert "Cannot load" not in info[0] and toy_model.NAME in info[0]
    assert [u["visible"] for u in info[1:9]] == [False] * 8           # an image-shaped z: no per-pixel sliders
    assert info[9]["visible"] is False                                # no class
    seed_3, timing = explorer.predict(source, *controls(seed=3), api_name="/generate")
    assert "server time" in timing and pixels(seed_3).shape[:2] == (28 * 9, 28 * 9)
    again, _ = explorer.predict(source, *controls(seed=3), api_name="/generate")
    slid, _ = explorer.predict(source, *controls(seed=3, z=[2.5, -2.5]), api_name="/generate")
    seed_4, _ = explorer.predict(source, *controls(seed=4), api_name="/generate")
    assert np.array_equal(pixels(seed_3), pixels(again)) and np.array_equal(pixels(seed_3), pixels(slid))
    assert np.abs(pixels(seed_3) - pixels(seed_4)).mean() > 0.1
    start = pixels(explorer.predict(source, 3, 4, 8, 0.0, *controls(), api_name="/frame"))
    middle = pixels(explorer.predict(source, 3, 4, 8, 0.5, *controls(), api_name="/frame"))
    end = pixels(explorer.predict(source, 3, 4, 8, 1.0, *controls(), api_name="/frame"))
    assert np.array_equal(start, pixels(seed_3)) and np.array_equal(end, pixels(seed_4))
    assert np.abs(middle - start).mean() > 0.1 and np.abs(middle - end).mean() > 0.1
    _, gif_path = explorer.predict(source, 3, 4, 8, *controls(), api_name="/gif")
    gif = Image.open(gif_path)
    assert gif.format == "GIF" and gif.n_frames == 8 + 6
    with pytest.raises(AppError, match=r"z\[0\]"):                     # no z axis to sweep: refused
        explorer.predict(source, "z[0]", "seeds", 4, 2, *controls(), api_name="/sweep")


# ---------------------------------------------------------------- the Hub folder
def test_saved_for_the_hub_and_loaded_back_gives_identical_samples(run, tmp_path):
    from genlab.hub import load_from_hub, save_for_hub
    folder = save_for_hub(run, tmp_path / "hub", half=False)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    assert toy_model.NAME in (folder / "README.md").read_text()
    loaded = load_from_hub(folder)
    assert loaded.name == toy_model.NAME and not loaded.training
    assert torch.equal(samples(genlab.load(run)), samples(loaded))
    assert not isinstance(loaded, HasEncoder)


# ---------------------------------------------------------------- no model named outside the models
NAME_LITERAL = re.compile(r"""(['"])(gan|dcgan|cgan|infogan|vae|ddpm|flow)\1""")
SCANNED = ["genlab", "app.py", "pages", "space_app.py", "tools", "bench", "tests"]     # all but genlab/models/
# Tests about one paper's model (its networks, losses or shipped file) may name it.
ABOUT_ONE_MODEL = {"tests/test_models.py", "tests/test_diffusion.py", "tests/test_losses.py", "tests/test_checkpoints.py",
                   "tests/distributed_worker.py"}    # hooks DCGAN's Generator/Discriminator classes to compare ranks
# A benchmark's command-line default: the model its published numbers were measured on; any model can be named.
# The product's default model, named once (genlab/config.py), is a default, not a choice by name.
CLI_DEFAULT = re.compile(r"""add_argument\("--model", default="dcgan"[,)]|^DEFAULT_MODEL = "dcgan" """)


def scanned_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = REPO / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [f for f in files if f.relative_to(REPO).as_posix() not in ABOUT_ONE_MODEL
            and not f.relative_to(REPO).as_posix().startswith("genlab/models/")
            and f != Path(__file__).resolve()]                    # this file spells the names it looks for


def test_no_registered_model_is_named_outside_the_models():
    found = [f"{file.relative_to(REPO)}:{number}: {line.strip()}"
             for file in scanned_files() for number, line in enumerate(file.read_text().splitlines(), 1)
             if NAME_LITERAL.search(line) and not CLI_DEFAULT.search(line)]
    assert not found, "choose by capability (tests: tests/picks.py), not by name:\n" + "\n".join(found)


def test_the_name_scan_finds_a_quoted_name_and_allows_only_a_cli_default():
    assert NAME_LITERAL.search('if model_name == "vae":') and NAME_LITERAL.search("build('cgan')")
    assert not NAME_LITERAL.search('"live-dcgan"') and not NAME_LITERAL.search("dcgan_loss")
    assert CLI_DEFAULT.search('parser.add_argument("--model", default="dcgan")')
    assert not CLI_DEFAULT.search('config = {"model": "dcgan"}')
    assert len(scanned_files()) > 40
