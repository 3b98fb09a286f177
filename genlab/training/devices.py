"""Where and how a run computes: the device, bf16 autocast, channels_last."""
from __future__ import annotations

import contextlib

import torch

from ..config import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable device is refused."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use --device auto or cpu")
    if name == "mps" and not mps:
        raise ConfigError("device 'mps' was asked for but is not available; use --device auto or cpu")
    return torch.device(name)


def use_bf16(amp: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast: 'auto' means on CUDA only; 'bf16' off CUDA is refused."""
    if amp == "bf16" and device.type != "cuda":
        raise ConfigError(f"amp 'bf16' is for CUDA GPUs; this run is on {device.type}; use --amp auto or off")
    return amp != "off" and device.type == "cuda"


def use_channels_last(setting: str, model: torch.nn.Module, device: torch.device) -> bool:
    """channels_last for models with convolutions. 'auto' means on CUDA, and on the CPU for
    all-convolutional models (no Linear layer): oneDNN's convolutions skip their NCHW reorders, a
    DCGAN step measured 1.1-1.2x faster (bench/step_ratio.py --channels-last). A model with Linear
    layers flattens its conv features, which copies them back to NCHW; it stays NCHW on the CPU."""
    layers = list(model.modules())
    if setting == "off" or not any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in layers):
        return False
    all_convolutional = not any(isinstance(m, torch.nn.Linear) for m in layers)
    return setting == "on" or device.type == "cuda" or (device.type == "cpu" and all_convolutional)


def precision(bf16: bool, device: torch.device):
    """The context one training step runs in: bf16 autocast, or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
