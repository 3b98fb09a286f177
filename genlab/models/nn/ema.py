"""An exponential moving average of a network's weights, owned by the model as a submodule, so
checkpoints, resume, broadcast and export carry it like any other weights."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """theta_ema <- d * theta_ema + (1 - d) * theta after every step (Polyak averaging; the decay warms
    up as min(d, (1 + step) / (10 + step)), as in Tarvainen 2017 / the DDPM and StyleGAN code)."""

    def __init__(self, network: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.shadow = copy.deepcopy(network).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, network: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        ema_params = list(self.shadow.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in network.parameters()], 1.0 - decay)
        for ema_buffer, buffer in zip(self.shadow.buffers(), network.buffers()):
            ema_buffer.copy_(buffer)                       # BatchNorm statistics follow the network

    def forward(self, *args, **kwargs):
        return self.shadow(*args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.shadow.eval()                                 # the average is always used for inference
        return self
