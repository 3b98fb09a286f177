"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same
kind of random, differentiable transform T applied to real and to fake images before D, in D's step and in
G's step, so D never sees an un-augmented image and G's gradient flows through T. Follows the authors'
DiffAugment_pytorch.py (color, translation 1/8, cutout 1/2), with the randomness drawn from a given
torch.Generator so a run stays reproducible and its resume bit-exact."""
from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> a tuple of known names ('' -> no augmentation)."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    return names


def uniform(x: torch.Tensor, generator: torch.Generator, *shape: int) -> torch.Tensor:
    """U[0, 1) of `shape` on x's device and dtype, from `generator` (a CPU generator is moved over)."""
    values = torch.rand(shape, generator=generator, device=generator.device)
    return values.to(device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Brightness +U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5), per image."""
    b = x.shape[0]
    x = x + (uniform(x, generator, b, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)                                           # (B, 1, H, W)
    x = (x - mean) * (uniform(x, generator, b, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)                                   # (B, 1, 1, 1)
    return (x - mean) * (uniform(x, generator, b, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio x side pixels in x and y, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = (uniform(x, generator, b, 1, 1) * (2 * sh + 1)).long().to(x.device) - sh          # (B, 1, 1)
    dx = (uniform(x, generator, b, 1, 1) * (2 * sw + 1)).long().to(x.device) - sw
    rows = torch.arange(h, device=x.device)[None, :, None] + dy + 1                        # (B, H, 1)
    cols = torch.arange(w, device=x.device)[None, None, :] + dx + 1                        # (B, 1, W)
    rows, cols = rows.clamp(0, h + 1).expand(b, h, w), cols.clamp(0, w + 1).expand(b, h, w)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))                                       # (B, C, H+2, W+2)
    batch = torch.arange(b, device=x.device)[:, None, None].expand(b, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)               # (B, C, H, W)


def cutout(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ratio x image at a random place per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = (uniform(x, generator, b, 1, 1) * (h + (1 - ch % 2))).long().to(x.device)         # (B, 1, 1)
    cx = (uniform(x, generator, b, 1, 1) * (w + (1 - cw % 2))).long().to(x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    top, left = rows - cy + ch // 2, cols - cx + cw // 2                                    # (B, H, 1), (B, 1, W)
    inside = (top >= 0) & (top < ch) & (left >= 0) & (left < cw)                            # (B, H, W)
    return x * (~inside)[:, None].to(x.dtype)                                               # (B, C, H, W)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """T(x): the policy's transforms in the paper's order (color, translation, cutout)."""
    for name in POLICIES:
        if name in policy:
            x = TRANSFORMS[name](x, generator)
    return x
