"""A test-only model family in one file: a tiny flow-matching denoiser with an image-shaped latent.

Conditional flow matching (Lipman et al. 2023, eq. 23 with sigma_min = 0; Liu et al. 2023's
rectified flow): x_t = (1 - t) x + t eps, and a network v(x_t, t) regresses the velocity eps - x.
Sampling integrates dx/dt = v from t = 1 (noise z, shaped like an image) to t = 0 with
`sampling_steps` Euler steps, the model's sampling-cost knob. A learned per-time loss weight
(Karras et al. 2024, EDM2 eq. 21) is training-only, so an inference export drops it.

It registers itself only inside the test suite (`registered()` / the `toy_model` fixture), and
proves that a family the library has never seen trains, resumes and exports with no edit elsewhere.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from genlab.config import param
from genlab.models import LatentModel, LatentSpec, StepContext, register_model, unregister_model
from genlab.models.base import ImageConfig
from genlab.models.nn.optim import adam, optimizer_step

NAME = "toy-flow"


@dataclass
class ToyFlowConfig(ImageConfig):
    width: int = param(16, "Channels of the velocity network.", low=4, high=256)
    sampling_steps: int = param(8, "Euler steps from noise to image (the sampling cost).", low=1, high=1000)
    lr: float = param(1e-3, "Adam learning rate.", low=1e-6, high=1.0, log=True)


class VelocityNet(nn.Module):
    """v(x_t, t): three 3x3 convolutions over the image with t as one more constant channel."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels + 1, width, 3, 1, 1), nn.SiLU(),
                                 nn.Conv2d(width, width, 3, 1, 1), nn.SiLU(),
                                 nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, x, t):                                              # (B, C, H, W), (B,)
        t_map = t.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])          # (B, 1, H, W)
        return self.net(torch.cat([x, t_map], dim=1))                     # (B, C, H, W)


class ToyFlow(LatentModel):
    """A velocity network, its EMA for samples, and a training-only loss weight u(t)."""
    config_class = ToyFlowConfig
    tiny = {"width": 8, "sampling_steps": 4}
    training_only = ("loss_weight",)
    ema_of = "velocity"

    def __init__(self, config: ToyFlowConfig):
        super().__init__(config)
        self.check_config()
        self.velocity = VelocityNet(config.channels, config.width)
        self.loss_weight = nn.Linear(1, 1)               # u(t): the loss's log-variance at time t
        self.attach_ema()

    def latent_spec(self) -> LatentSpec:
        shape = (self.config.channels, self.config.image_size, self.config.image_size)
        return LatentSpec(z_dim=math.prod(shape), z_shape=shape)

    def make_optimizers(self) -> dict:
        params = [p for name, p in self.named_parameters() if not name.startswith("ema.")]
        return {"velocity": adam(params, self.config.lr, 0.9, 0.999)}

    def training_step(self, batches, optimizers: dict, ctx: StepContext) -> dict:
        """One step on the flow-matching loss, weighted by exp(-u(t)) plus u(t) (EDM2 eq. 21)."""
        x, _ = batches()                                                  # (B, C, H, W) in [-1, 1]
        eps = torch.randn(x.shape, generator=ctx.rng, device=x.device)
        t = torch.rand(x.shape[0], generator=ctx.rng, device=x.device)    # (B,)
        x_t = (1 - t.view(-1, 1, 1, 1)) * x + t.view(-1, 1, 1, 1) * eps
        mse = (self.velocity(x_t, t) - (eps - x)).pow(2).flatten(1).mean(1)   # (B,)
        u = self.loss_weight(t[:, None]).squeeze(1)                       # (B,)
        loss = (mse * torch.exp(-u) + u).mean()
        optimizer_step(optimizers["velocity"], loss, ctx, self.config)
        self.end_step(ctx)
        return {"loss/total": loss.detach(), "loss/mse": mse.mean().detach()}

    def generate(self, z, **_) -> torch.Tensor:
        """Euler steps of dx/dt = v(x, t) from t = 1 (z) to t = 0; images in [-1, 1]."""
        velocity = self.sampling_network()
        steps = self.config.sampling_steps
        x = z                                                             # (B, C, H, W)
        for i in range(steps, 0, -1):
            t = torch.full((z.shape[0],), i / steps, device=z.device)
            x = x - velocity(x, t) / steps
        return x.clamp(-1, 1)


@contextlib.contextmanager
def registered():
    """The toy in the registry for the duration of a `with` block."""
    register_model(NAME)(ToyFlow)
    try:
        yield ToyFlow
    finally:
        unregister_model(NAME)


@pytest.fixture
def toy_model():
    """The toy's registered name, removed from the registry after the test."""
    with registered():
        yield NAME
