"""The pretrained MNIST checkpoints shipped in checkpoints/: they load through genlab.load, sample,
stay small, carry a model card with the exact command, and the cGAN's class control gives the
chosen digit (read by a 1-nearest-neighbour classifier on real MNIST, where it is present)."""
from pathlib import Path

import pytest
import torch

import genlab

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
MODELS = ["gan", "dcgan", "cgan", "infogan", "vae"]


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_loads_samples_and_has_a_card(name):
    path = CHECKPOINTS / f"mnist-{name}.safetensors"
    model = genlab.load(path)
    assert model.name == name and not model.training
    with torch.no_grad():
        images = model.sample(8, torch.Generator().manual_seed(0))
    assert images.shape == (8, 1, 28, 28) and torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1       # not a blank canvas
    assert path.stat().st_size < 15e6
    card = (CHECKPOINTS / f"mnist-{name}.md").read_text()
    assert f"python train.py --model {name} --dataset mnist" in card and "## What it shows" in card
    assert "(to be written" not in card
    assert (CHECKPOINTS / f"mnist-{name}.png").exists()


def test_checkpoints_folder_stays_small():
    total = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert total < 40e6


def test_vae_reconstructs_the_shipped_test_digits():
    from genlab import latent as L
    import numpy as np
    from PIL import Image
    model = genlab.load(CHECKPOINTS / "mnist-vae.safetensors")
    digits = np.stack([np.array(Image.open(CHECKPOINTS / "examples" / f"mnist-test-{d}.png")) for d in range(10)])
    decoded = np.stack([L.generate_images(model, {"z": L.encode_image(model, L.prepare_image(d, 1, 28))[None]})[0, ..., 0]
                        for d in digits]).astype(float)                       # (10, 28, 28)
    distance = np.abs(decoded[:, None] - digits[None].astype(float)).mean((2, 3))      # (decoded, example)
    assert (distance.argmin(1) == np.arange(10)).all()            # each decodes nearest to itself, not another
    assert distance.diagonal().max() < 25                         # gray levels; other digits are ~35-50 away


def test_cgan_class_control_gives_the_chosen_digit(mnist_data_root):
    data = genlab.load_dataset(genlab.TrainConfig(dataset="mnist", data_root=str(mnist_data_root)), "train")
    reference, labels = data.images[:3000].float().flatten(1) / 255, data.labels[:3000]
    model = genlab.load(CHECKPOINTS / "mnist-cgan.safetensors")
    latents = model.sample_latents(200, torch.Generator().manual_seed(0))
    latents["y"] = torch.arange(10).repeat_interleave(20)
    with torch.no_grad():
        images = ((model.generate(**latents) + 1) / 2).flatten(1)
    read = labels[torch.cdist(images, reference).argmin(1)]
    assert (read == latents["y"]).float().mean() > 0.7      # chance is 0.1; 1-NN reads real digits at ~0.9


def ink_moments(images):
    """(slant, width) of each image's ink: -cov(x, y) / var(y) (> 0 leans right) and std(x), in pixels."""
    ink = ((images.float() + 1) / 2)[:, 0]
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = ink.sum((1, 2))
    dx = xs - ((ink * xs).sum((1, 2)) / mass)[:, None, None]
    dy = ys - ((ink * ys).sum((1, 2)) / mass)[:, None, None]
    moment = lambda a, b: (ink * a * b).sum((1, 2)) / mass          # noqa: E731
    return -moment(dx, dy) / moment(dy, dy), moment(dx, dx).sqrt()


def test_infogan_continuous_codes_are_width_and_slant():
    model = genlab.load(CHECKPOINTS / "mnist-infogan.safetensors")
    base = model.sample_latents(64, torch.Generator().manual_seed(7))
    shapes = {}
    for code in (0, 1):
        for value in (-1.0, 1.0):
            latents = {k: v.clone() for k, v in base.items()}
            latents["cont"][:, code] = value
            with torch.no_grad():
                slant, width = ink_moments(model.generate(**latents))
            shapes[code, value] = (float(slant.mean()), float(width.mean()))
    width_change = {code: shapes[code, 1.0][1] - shapes[code, -1.0][1] for code in (0, 1)}
    slant_change = {code: shapes[code, 1.0][0] - shapes[code, -1.0][0] for code in (0, 1)}
    assert abs(width_change[0]) > 0.5 and abs(width_change[0]) > 2 * abs(width_change[1])   # cont[0]: width
    assert slant_change[1] > 0.4 and slant_change[1] > 2 * abs(slant_change[0])            # cont[1]: slant
