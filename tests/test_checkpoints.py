"""The pretrained checkpoints shipped in checkpoints/ (named <dataset>-<model>[-<variant>]): they load
through genlab.load, sample images of their data set's shape, stay small, carry a model card with the
exact command, were exported without their training-only parts, and what each can do works (a
class-conditional model gives the chosen class, read by a 1-nearest-neighbour classifier on its real
data set; an encoder reconstructs; codes move width and slant). Which checks apply is chosen by
capability. And the export tool drops what `inference_drop()` names."""
import importlib.util
import json
import socket
from pathlib import Path

import pytest
import torch

import genlab
from genlab import runs
from genlab.checkpoint import DroppedPart, save_checkpoint
from genlab.models import MODELS, HasEncoder, HasLatents, build_model, has_classes

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"


def genlab_checkpoints(folder: Path) -> list[Path]:
    """The model checkpoints in a folder (safetensors files with a genlab header; not the judge)."""
    from safetensors import safe_open
    found = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            if "genlab" in (f.metadata() or {}):
                found.append(path)
    return found


SHIPPED = genlab_checkpoints(CHECKPOINTS)
LOADED = {path: genlab.load(path) for path in SHIPPED}


def shipped(capable) -> list[Path]:
    """The shipped checkpoints whose model passes `capable(model)`."""
    return [path for path, model in LOADED.items() if capable(model)]


def dataset_of(model) -> str:
    return model.checkpoint_header["train_config"]["dataset"]


def test_checkpoints_are_shipped():
    assert SHIPPED and {dataset_of(model) for model in LOADED.values()} >= {"mnist"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_checkpoint_loads_samples_and_has_a_card(path):
    model = genlab.load(path)
    dataset, c = dataset_of(model), model.config
    assert path.stem == f"{dataset}-{model.name}" or path.stem.startswith(f"{dataset}-{model.name}-")
    assert not model.training
    with torch.no_grad():
        images = model.sample(8, torch.Generator().manual_seed(0))
    assert images.shape == (8, c.channels, c.image_size, c.image_size) and torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1       # not a blank canvas
    assert path.stat().st_size < 30e6
    assert model.checkpoint_header.get("dropped", []) == sorted(model.inference_drop())
    card = path.with_suffix(".md").read_text()
    assert f"python train.py --model {model.name} --dataset {dataset}" in card and "## What it shows" in card
    assert "(to be written" not in card
    assert path.with_suffix(".webp").exists()


def test_checkpoints_folder_stays_small():
    total = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert total < 60e6


@pytest.mark.parametrize("path", shipped(lambda m: isinstance(m, HasEncoder) and isinstance(m, HasLatents)),
                         ids=lambda p: p.stem)
def test_encoders_reconstruct_the_shipped_test_digits(path):
    from genlab import latent as L
    import numpy as np
    from PIL import Image
    model = LOADED[path]
    digits = np.stack([np.array(Image.open(CHECKPOINTS / "examples" / f"mnist-test-{d}.png")) for d in range(10)])
    decoded = np.stack([L.generate_images(model, {"z": L.encode_image(model, L.prepare_image(d, 1, 28))[None]})[0, ..., 0]
                        for d in digits]).astype(float)                       # (10, 28, 28)
    distance = np.abs(decoded[:, None] - digits[None].astype(float)).mean((2, 3))      # (decoded, example)
    assert (distance.argmin(1) == np.arange(10)).all()            # each decodes nearest to itself, not another
    assert distance.diagonal().max() < 25                         # gray levels; other digits are ~35-50 away


def real_data(dataset: str, split: str = "train"):
    """A shipped model's real data set (MNIST from ../shared/data, the others where installed), else a skip."""
    try:
        return genlab.load_dataset(genlab.TrainConfig(dataset=dataset, data_root=str(ROOT.parent / "shared" / "data")),
                                   split)
    except Exception as error:                                      # noqa: BLE001 - absent data: a clean skip
        pytest.skip(f"{dataset} is not installed here: {str(error)[:120]}")


@pytest.mark.data
@pytest.mark.parametrize("path", shipped(has_classes), ids=lambda p: p.stem)
def test_class_control_gives_the_chosen_class(path):
    """1-NN on 3000 real training images (not the judge) reads the class asked for; chance is 1/classes."""
    model = LOADED[path]
    data = real_data(dataset_of(model))
    reference, labels = data.images[:3000].float().flatten(1) / 255, data.labels[:3000]
    test = real_data(dataset_of(model), "test")
    nearest_on_real = (labels[torch.cdist(test.images[:500].float().flatten(1) / 255, reference).argmin(1)]
                       == test.labels[:500]).float().mean()          # what 1-NN reads on real images
    y = torch.arange(model.config.num_classes).repeat_interleave(20)
    with torch.no_grad():
        images = ((model.sample(len(y), torch.Generator().manual_seed(0), y=y) + 1) / 2).flatten(1)
    read = labels[torch.cdist(images, reference).argmin(1)]
    assert (read == y).float().mean() > 0.8 * nearest_on_real      # MNIST: 1-NN reads ~0.9 of real digits


def ink_moments(images):
    """(slant, width) of each image's ink: -cov(x, y) / var(y) (> 0 leans right) and std(x), in pixels."""
    ink = ((images.float() + 1) / 2)[:, 0]
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = ink.sum((1, 2))
    dx = xs - ((ink * xs).sum((1, 2)) / mass)[:, None, None]
    dy = ys - ((ink * ys).sum((1, 2)) / mass)[:, None, None]
    moment = lambda a, b: (ink * a * b).sum((1, 2)) / mass          # noqa: E731
    return -moment(dx, dy) / moment(dy, dy), moment(dx, dx).sqrt()


@pytest.mark.parametrize("path", shipped(lambda m: isinstance(m, HasLatents) and m.latent_spec().continuous >= 2),
                         ids=lambda p: p.stem)
def test_continuous_codes_move_width_and_slant(path):
    """Chen 2016 finds the MNIST codes move the stroke width and the slant: every continuous code of a shipped
    file moves one of them visibly (in pixels, code -1 -> +1, mean over 256 samples). The shipped InfoGAN's
    two codes both mix width and slant (its card gives the numbers), so no one-to-one mapping is asserted."""
    model = LOADED[path]
    base = model.sample_latents(256, torch.Generator().manual_seed(7))
    for code in range(model.latent_spec().continuous):
        shapes = {}
        for value in (-1.0, 1.0):
            latents = {k: v.clone() for k, v in base.items()}
            latents["cont"][:, code] = value
            with torch.no_grad():
                slant, width = ink_moments(model.generate(**latents))
            shapes[value] = (float(slant.mean()), float(width.mean()))
        moved = max(abs(shapes[1.0][0] - shapes[-1.0][0]), abs(shapes[1.0][1] - shapes[-1.0][1]))
        assert moved > 0.4, f"cont[{code}] moves neither width nor slant ({moved:.2f} px)"


# ---------------------------------------------------------------- the export tool

def export_tool():
    spec = importlib.util.spec_from_file_location("export_checkpoints", ROOT / "tools" / "export_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(name: str) -> dict:
    return dict(MODELS[name].tiny, channels=1, image_size=28, num_classes=10)


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["plain", "ema"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_drops_exactly_what_inference_drop_names(name, ema, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, dict(tiny_config(name), ema_decay=ema)).eval()
    save_checkpoint(tmp_path / "full.safetensors", model, {"step": 3})
    exported = genlab.load(export_tool().export_inference(tmp_path / "full.safetensors", tmp_path / "out.safetensors"))
    parts = model.inference_drop()
    assert set(type(model).training_only) <= set(parts)
    assert (model.ema_of in parts) == (ema > 0 and type(model).ema_samples_only)   # the average samples alone
    assert exported.checkpoint_header["dropped"] == sorted(parts)
    assert all(isinstance(getattr(exported, part), DroppedPart) for part in parts)
    kept = {key for key in model.state_dict() if not key.startswith(tuple(f"{part}." for part in parts))}
    assert set(exported.state_dict()) == kept
    with torch.no_grad():
        assert torch.allclose(exported.sample(4, torch.Generator().manual_seed(1)),
                              model.sample(4, torch.Generator().manual_seed(1)), atol=2e-2)   # fp16


def test_export_tool_writes_weights_grid_and_a_card_by_capability(tmp_path):
    name = sorted(n for n, cls in MODELS.items() if cls.training_only)[0]
    run = tmp_path / "run"
    genlab.train({"train": {"model": name, "dataset": "synthetic", "steps": 2, "batch_size": 8, "log_every": 1,
                            "early_grids": False}, "model": MODELS[name].tiny}, run)
    (run / "eval.json").write_text(json.dumps({"results": {"fid": {"fid": 12.5, "fid_floor": 0.5}}}))
    out = tmp_path / "out"
    export_tool().main(["--models", "--run", f"synthetic-{name}-small={run}", "--out", str(out)])
    weights = out / f"synthetic-{name}-small.safetensors"
    model = genlab.load(weights)
    assert model.checkpoint_header["dropped"] == list(MODELS[name].training_only)
    card = (out / f"synthetic-{name}-small.md").read_text()
    assert f"python train.py --model {name}" in card and "judge FID 12.50 (train-vs-test floor 0.50)" in card
    assert "--no-early-grids" in card and "--early-grids False" not in card      # a flag train.py parses
    assert "Trained on synthetic data" in card and "synthetic data train split, 2048 images, 1 x 28 x 28" in card
    assert f"drop={tuple(MODELS[name].training_only)!r}" in card and (out / f"synthetic-{name}-small.webp").exists()
    with pytest.raises(SystemExit, match="must be <dataset>-<model>"):        # the name must say the data set
        export_tool().main(["--models", "--run", f"mnist-{name}={run}", "--out", str(out)])
    assert not (out / f"mnist-{name}.safetensors").exists()
    runs.write_status(run, "stopped")                      # stopped by hand: the card says so, not "still training"
    export_tool().main(["--models", "--run", f"synthetic-{name}-stopped={run}", "--out", str(out), "--allow-unfinished"])
    steps_line = next(line for line in (out / f"synthetic-{name}-stopped.md").read_text().splitlines()
                      if line.startswith("| steps |"))
    assert "stopped by hand at this step" in steps_line and "still training" not in steps_line
    runs.write_status(run, "running", identity={"pid": 2**22 + 7, "host": socket.gethostname()})   # its process gone
    assert runs.read_status(run)["state"] == "interrupted"
    export_tool().main(["--models", "--run", f"synthetic-{name}-cut={run}", "--out", str(out), "--allow-unfinished"])
    steps_line = next(line for line in (out / f"synthetic-{name}-cut.md").read_text().splitlines()
                      if line.startswith("| steps |"))
    assert "ended without a final status" in steps_line and "still training" not in steps_line
