#!/usr/bin/env python
"""What the shipped MNIST checkpoints' controls do, in numbers (prints them, asserts nothing).

    python -m bench.checkpoint_semantics --data-root ../shared/data [--checkpoints checkpoints]

Every genlab checkpoint in the folder, each control it has (chosen by capability):
- class-conditional models: for each class y, the share of `sample(n, rng, y)` a 1-nearest-neighbour
  classifier (on 5000 real MNIST training digits) reads as y.
- latent models with a categorical code: for each value of the code, the digit the classifier reads
  most often and how often (a code that separates digits gives ten different digits, each with a
  high share).
- latent models with continuous codes: as each code sweeps its range (other latents fixed, 64
  seeds), the change of the ink's slant (x-y covariance / y variance) and width (std of x), two
  properties InfoGAN finds in c2 and c3.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


import genlab
from genlab.checkpoint import CheckpointError
from genlab.models import HasLatents, has_classes
from genlab.models.base import sample_prior


def reference(data_root: str, count: int = 5000):
    """(images (N, 784) in [0, 1], labels) of the first `count` MNIST training digits."""
    data = genlab.load_dataset(genlab.TrainConfig(dataset="mnist", data_root=data_root), "train")
    images = data.images[:count].float().flatten(1) / 255
    return images, data.labels[:count]


def classify(images: torch.Tensor, ref_images: torch.Tensor, ref_labels: torch.Tensor) -> torch.Tensor:
    """1-nearest-neighbour digit of each image (B, 1, 28, 28) in [-1, 1], by Euclidean distance."""
    x = ((images.float() + 1) / 2).flatten(1)
    return ref_labels[torch.cdist(x, ref_images).argmin(1)]


def ink_shape(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(slant, width) of each image's ink: cov(x, y) / var(y) and std(x), from intensity moments."""
    ink = ((images.float() + 1) / 2)[:, 0]                                   # (B, H, W)
    h, w = ink.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    mass = ink.sum((1, 2)).clamp_min(1e-6)
    mx, my = (ink * xs).sum((1, 2)) / mass, (ink * ys).sum((1, 2)) / mass
    dx, dy = xs - mx[:, None, None], ys - my[:, None, None]
    cov_xy = (ink * dx * dy).sum((1, 2)) / mass
    var_y = (ink * dy * dy).sum((1, 2)) / mass
    var_x = (ink * dx * dx).sum((1, 2)) / mass
    return -cov_xy / var_y, var_x.sqrt()                   # slant > 0: top leans right (image y points down)


def models_in(folder: Path) -> list:
    """Every genlab model checkpoint in a folder, loaded (other safetensors files, e.g. the judge, skipped)."""
    found = []
    for path in sorted(folder.glob("*.safetensors")):
        try:
            found.append(genlab.load(path))
        except CheckpointError:
            continue
    return found


@torch.no_grad()
def class_control(model, samples: int, ref_images, ref_labels) -> None:
    shares = []
    for y in range(model.config.num_classes):
        labels = torch.full((samples,), y, dtype=torch.long)
        images = model.sample(samples, torch.Generator().manual_seed(y), y=labels)
        shares.append(float((classify(images, ref_images, ref_labels) == y).float().mean()))
    print(f"{model.name}: share of samples of class y read as digit y by 1-NN")
    print("  " + "  ".join(f"{y}:{s:.2f}" for y, s in enumerate(shares)) + f"   mean {np.mean(shares):.2f}")


@torch.no_grad()
def categorical_code(model, samples: int, ref_images, ref_labels) -> None:
    spec = model.latent_spec()
    print(f"{model.name}: categorical code value -> most frequent digit (share)")
    mapping = []
    for value in range(spec.categorical[0]):
        latents = sample_prior(spec, samples, torch.Generator().manual_seed(100 + value), model.device)
        latents["cat"][:, 0] = value
        digits = classify(model.generate(**latents), ref_images, ref_labels)
        counts = torch.bincount(digits, minlength=10)
        mapping.append((int(counts.argmax()), float(counts.max()) / len(digits)))
    print("  " + "  ".join(f"c={v}->{d} ({s:.2f})" for v, (d, s) in enumerate(mapping)))
    print(f"  distinct digits over the {len(mapping)} values: {len({d for d, _ in mapping})}")


@torch.no_grad()
def continuous_codes(model) -> None:
    spec = model.latent_spec()
    base = sample_prior(spec, 64, torch.Generator().manual_seed(7), model.device)
    low, high = spec.continuous_range
    for code in range(spec.continuous):
        rows = []
        for value in np.linspace(low, high, 5):
            latents = {k: v.clone() for k, v in base.items()}
            latents["cont"][:, code] = float(value)
            slant, width = ink_shape(model.generate(**latents))
            rows.append((value, float(slant.mean()), float(width.mean())))
        print(f"{model.name} cont[{code}] sweep {low:+.0f}..{high:+.0f}: slant " +
              " ".join(f"{s:+.2f}" for _, s, _ in rows) + " | width " + " ".join(f"{w:.2f}" for _, _, w in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--samples", type=int, default=200, help="samples per class / code value")
    args = parser.parse_args()
    ref_images, ref_labels = reference(args.data_root)
    for model in models_in(Path(args.checkpoints)):
        if has_classes(model):
            class_control(model, args.samples, ref_images, ref_labels)
        if isinstance(model, HasLatents) and model.latent_spec().categorical:
            categorical_code(model, args.samples, ref_images, ref_labels)
        if isinstance(model, HasLatents) and model.latent_spec().continuous:
            continuous_codes(model)


if __name__ == "__main__":
    main()
