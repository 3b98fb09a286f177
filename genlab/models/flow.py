"""Flow matching (Lipman et al. 2023, conditional OT path with sigma_min = 0; Liu et al. 2023, rectified flow).

Convention: t runs from noise to data, x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I) the noise and x1 an image,
so the path's velocity is dx_t/dt = x1 - x0. A U-Net v(x_t, t, y) (time embedded as 1000 t) is trained with
|| v(x_t, t) - (x1 - x0) ||^2 over t ~ U(0, 1) (Lipman eq. 23), and samples integrate dx/dt = v from t = 0
(noise) to t = 1 with Euler or Heun steps (the trapezoidal predictor-corrector, 2 evaluations a step; its
last step is Euler, as in Karras et al. 2022, Algorithm 1, so N steps cost 2N - 1 evaluations).
The prediction of the image at time t is x1_hat = x_t + (1 - t) v. Classifier-free guidance as in DDPM:
v~ = (1 + w) v(x, c) - w v(x, null). The per-time loss logs use t itself: `loss/t_low` is near the noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import param
from .base import StepContext
from .denoising import DenoiserConfig, DenoisingModel, stratified_uniform
from .registry import register_model

TIME_SCALE = 1000.0             # the U-Net's sinusoidal embedding sees 1000 t, the range DDPM's t has


@dataclass
class FlowConfig(DenoiserConfig):
    sampler: str = param("euler", "ODE solver from noise to image: euler (1 evaluation a step) or heun "
                         "(2 evaluations a step, the last one Euler; second order).", choices=("euler", "heun"))


@register_model("flow")
class Flow(DenoisingModel):
    """Velocity prediction on straight noise-to-data paths, with classifier-free guidance and an EMA."""
    config_class = FlowConfig
    tiny = {"width": 8, "channel_mult": "1,2", "blocks": 1, "dropout": 0.0, "sampling_steps": 2,
            "ema_decay": 0.0}
    samplers = ("euler", "heun")

    def __init__(self, config: FlowConfig):
        super().__init__(config)
        self.attach_ema()

    def training_step(self, batches, optimizers: dict, ctx: StepContext) -> dict:
        """Lipman eq. 23 with sigma_min = 0: || v(x_t, t) - (x1 - x0) ||^2, x_t = (1 - t) x0 + t x1."""
        x1, labels = batches()                                                    # (B, C, H, W) images
        t = stratified_uniform(x1.shape[0], ctx.rng, x1.device)                   # (B,) in [0, 1)
        x0 = torch.randn(x1.shape, generator=ctx.rng, device=x1.device)           # the noise end
        t_ = t.view(-1, 1, 1, 1)
        x_t = (1 - t_) * x0 + t_ * x1                                             # (B, C, H, W)
        y = self.training_labels(labels, ctx.rng)
        per_sample = (self.network(x_t, t * TIME_SCALE, y) - (x1 - x0)).pow(2).flatten(1).mean(1)   # (B,)
        return self.finish_step(per_sample, t, optimizers, ctx)

    def velocity(self, network, x, t: float, y, guidance: float):
        return self.guided(network, x, torch.full((x.shape[0],), t * TIME_SCALE, device=x.device), y, guidance)

    def integrate(self, noise, y, steps, guidance, sampler, rng, record):
        network, dt = self.sampling_network(), 1.0 / steps
        x, records = noise, []                                                    # (n, C, H, W) at t = 0
        for k in range(steps):
            t = k * dt
            v = self.velocity(network, x, t, y, guidance)
            if record:
                records.append((1.0 - t, x, (x + (1 - t) * v).clamp(-1, 1)))      # x1_hat = x_t + (1 - t) v
            if sampler == "euler":
                x = x + dt * v
            elif k == steps - 1:                                                  # Heun's last step: Euler
                x = x + dt * v         # (Karras 2022, Alg. 1: no correction into the data end; v at t = 1 is
                                       #  (x1 - x_t) / (1 - t) in the limit, never trained, and spoils the image)
            else:                                                                 # Heun: average the slopes
                x_euler = x + dt * v
                x = x + dt / 2 * (v + self.velocity(network, x_euler, t + dt, y, guidance))
        return x, records
