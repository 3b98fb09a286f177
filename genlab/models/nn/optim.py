"""Training services a model uses inside its `training_step`: Adam, the learning-rate schedule as a
pure function of the step (no scheduler state, so a resumed run is bit-exact), and gradient clipping.

    optimizer_step(optimizer, loss, ctx, config)   # zero_grad, backward, lr for ctx.step, clip, step
"""
from __future__ import annotations

import math

import torch


def adam(params, lr: float, beta1: float, beta2: float) -> torch.optim.Adam:
    """Adam with the fused kernel on CUDA and the foreach one elsewhere."""
    params = list(params)
    fused = params[0].is_cuda
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), fused=fused or None,
                            foreach=None if fused else True)


def lr_factor(step: int, total_steps: int | None, warmup: int = 0, decay: str = "none") -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based).

    Linear warm-up from 1/warmup to 1 over `warmup` steps (Goyal et al. 2017), then cosine
    (Loshchilov & Hutter 2017, eq. 5 without restarts) or linear decay to 0 at `total_steps`.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if decay == "none" or not total_steps or total_steps <= warmup:
        return 1.0
    progress = min(max((step - warmup) / (total_steps - warmup), 0.0), 1.0)
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if decay == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown lr_decay {decay!r}")


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """lr = initial lr * factor for every param group (the initial lr is kept in the group)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, ctx, config) -> torch.Tensor | None:
    """One update: zero_grad, backward, the scheduled lr for ctx.step, optional clipping, step.

    `config` supplies lr_warmup, lr_decay and grad_clip (fields of every model config). Returns the
    gradient norm before clipping when clipping is on (a diagnostic), else None.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.lr_warmup or config.lr_decay != "none":
        set_lr(optimizer, lr_factor(ctx.step, ctx.total_steps, config.lr_warmup, config.lr_decay))
    norm = None
    if config.grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip, foreach=True).detach()
    optimizer.step()
    return norm
