"""DDPM (Ho et al. 2020): a U-Net eps(x_t, t, y) trained with the simplified loss (eq. 14)
|| eps - eps(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2 over t uniform in {0, ..., T-1}, with a
linear (1e-4 .. 0.02) or cosine (Nichol & Dhariwal 2021, eq. 17) noise schedule, the class dropped to a
null class with probability p_uncond for classifier-free guidance (Ho & Salimans 2022).

`prediction v` trains the U-Net on v = sqrt(abar) eps - sqrt(1 - abar) x0 instead (Salimans & Ho 2022, §4 and
Appendix D), read back as x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v_hat. Near pure noise eps-prediction
divides the network's error by sqrt(abar) ~ 0 to get x0_hat, v-prediction does not (Lin et al. 2024, §3.2).

Timesteps are 0-based: abar_t = prod_{s <= t} (1 - beta_s), t = 0 is the least noisy. Samplers run over an
evenly spaced sub-sequence of `steps` timesteps that always starts at T - 1 ("trailing" spacing):
  ancestral  Ho Algorithm 2 with sigma_t^2 = beta~_t: x_prev ~ q(x_prev | x_t, x0_hat) (eq. 6-7), where
             beta_t becomes 1 - abar_t / abar_prev on a sub-sequence;
  ddim       Song et al. 2021 eq. 12; eta = 0 is deterministic, eta = 1 equals ancestral.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import param
from .base import StepContext
from .denoising import DenoiserConfig, DenoisingModel, stratified_uniform
from .registry import register_model


@dataclass
class DDPMConfig(DenoiserConfig):
    timesteps: int = param(1000, "Diffusion steps T (1000 in Ho et al. 2020).", low=2, high=10000)
    schedule: str = param("linear", "Noise schedule: linear betas 1e-4 .. 0.02 (Ho et al. 2020) or cosine "
                          "(Nichol & Dhariwal 2021).", choices=("linear", "cosine"))
    sampler: str = param("ddim", "ddim (Song et al. 2021; deterministic with eta 0) or ancestral "
                         "(Ho et al. 2020, Algorithm 2).", choices=("ddim", "ancestral"))
    eta: float = param(0.0, "DDIM's eta: 0 deterministic, 1 the ancestral sampler's variance.", low=0.0, high=1.0)
    clip_x0: bool = param(True, "Clip the predicted x0 to [-1, 1] at every sampling step.")
    prediction: str = param("eps", "What the U-Net predicts: eps, the noise (Ho et al. 2020), or "
                            "v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022), which stays accurate "
                            "near pure noise.", choices=("eps", "v"))


def make_betas(schedule: str, timesteps: int, s: float = 0.008) -> Tensor:
    """beta_1..beta_T in float64: Ho's linear 1e-4 .. 0.02, or cosine abar(t) = f(t) / f(0),
    f(t) = cos((t/T + s) / (1 + s) * pi/2)^2 with beta = 1 - abar_t / abar_{t-1} clipped at 0.999."""
    if schedule == "linear":                                  # on the CPU even while a loader builds on "meta"
        return torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64, device="cpu")
    t = torch.arange(timesteps + 1, dtype=torch.float64, device="cpu") / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2                          # (T+1,)
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)                           # (T,)


def timestep_sequence(steps: int, timesteps: int) -> list[int]:
    """`steps` timesteps evenly spread over {T-1, ..., 0}, descending, always starting at T - 1."""
    steps = min(steps, timesteps)
    return [round((steps - i) * timesteps / steps) - 1 for i in range(steps)]


@register_model("ddpm")
class DDPM(DenoisingModel):
    """Noise (or v) prediction (Ho et al. 2020) with classifier-free guidance and an EMA of the U-Net."""
    config_class = DDPMConfig
    tiny = {"width": 8, "channel_mult": "1,2", "blocks": 1, "dropout": 0.0, "timesteps": 50,
            "sampling_steps": 2, "ema_decay": 0.0, "patch": 2}       # flow's tiny keeps patch 1: both paths tested
    samplers = ("ddim", "ancestral")

    def __init__(self, config: DDPMConfig):
        super().__init__(config)
        alpha_bar = torch.cumprod(1 - make_betas(config.schedule, config.timesteps), dim=0)   # (T,) float64
        self.alpha_bar_host = alpha_bar.tolist()                                  # python floats: no sync
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)   # derived from the config
        self.attach_ema()

    def training_step(self, batches, optimizers: dict, ctx: StepContext) -> dict:
        """Ho eq. 14: || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2, t ~ U{0..T-1};
        with prediction v the target is v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho, App. D)."""
        x0, labels = batches()                                                    # (B, C, H, W) in [-1, 1]
        T = self.config.timesteps
        fraction = stratified_uniform(x0.shape[0], ctx.rng, x0.device)           # (B,) in [0, 1)
        t = (fraction * T).long().clamp(max=T - 1)                                # (B,) uniform on {0..T-1}
        eps = torch.randn(x0.shape, generator=ctx.rng, device=x0.device)
        x_t = self.q_sample(x0, t, eps)
        y = self.training_labels(labels, ctx.rng)
        target = eps if self.config.prediction == "eps" else self.v_target(x0, t, eps)
        per_sample = (self.network(x_t, t.float(), y) - target).pow(2).flatten(1).mean(1)   # (B,)
        return self.finish_step(per_sample, fraction, optimizers, ctx)

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t ~ q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I) (Ho eq. 4), for timesteps t (B,)."""
        abar = self.alpha_bar[t].view(-1, 1, 1, 1)                                # (B, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def v_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022, eq. in Appendix D), for timesteps t (B,)."""
        abar = self.alpha_bar[t].view(-1, 1, 1, 1)                                # (B, 1, 1, 1)
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0

    def predict_x0(self, x: Tensor, output: Tensor, abar: float) -> tuple[Tensor, Tensor]:
        """From the network's output at x_t: x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar) (eq. 4 inverted), or
        for v: x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v and eps = sqrt(1 - abar) x_t + sqrt(abar) v; x0_hat
        optionally clipped to [-1, 1], with the eps consistent with the clipped x0_hat."""
        if self.config.prediction == "v":
            x0 = math.sqrt(abar) * x - math.sqrt(1 - abar) * output
            eps = math.sqrt(1 - abar) * x + math.sqrt(abar) * output
        else:
            eps = output
            x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        if self.config.clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
        return x0, eps

    @staticmethod
    def ddim_step(x0: Tensor, eps: Tensor, abar_prev: float, sigma: float, z: Tensor | None) -> Tensor:
        """Song et al. 2021 eq. 12: sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z."""
        x = math.sqrt(abar_prev) * x0 + math.sqrt(max(1 - abar_prev - sigma ** 2, 0.0)) * eps
        return x if z is None else x + sigma * z

    @staticmethod
    def posterior_step(x: Tensor, x0: Tensor, abar: float, abar_prev: float, z: Tensor | None) -> Tensor:
        """Ho eq. 6-7: the mean of q(x_prev | x_t, x0_hat) plus sqrt(beta~) z, with beta = 1 - abar / abar_prev."""
        beta = 1 - abar / abar_prev
        x0_coefficient = math.sqrt(abar_prev) * beta / (1 - abar)
        x_t_coefficient = math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar)
        mean = x0_coefficient * x0 + x_t_coefficient * x
        variance = (1 - abar_prev) / (1 - abar) * beta                            # beta~ (eq. 7)
        return mean if z is None else mean + math.sqrt(variance) * z

    def integrate(self, noise, y, steps, guidance, sampler, rng, record):
        network, T = self.sampling_network(), self.config.timesteps
        sequence = timestep_sequence(steps, T)
        x, records = noise, []                                                    # (n, C, H, W)
        for i, t in enumerate(sequence):
            t_prev = sequence[i + 1] if i + 1 < len(sequence) else -1
            abar, abar_prev = self.alpha_bar_host[t], (self.alpha_bar_host[t_prev] if t_prev >= 0 else 1.0)
            output = self.guided(network, x, torch.full((x.shape[0],), float(t), device=x.device), y, guidance)
            x0, eps = self.predict_x0(x, output, abar)
            if record:
                records.append(((t + 1) / T, x, x0))
            if sampler == "ddim":
                eta = self.config.eta
                sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))   # eq. 16
                z = torch.randn(x.shape, generator=rng, device=x.device) if sigma > 0 else None
                x = self.ddim_step(x0, eps, abar_prev, sigma, z)
            else:
                z = torch.randn(x.shape, generator=rng, device=x.device) if t_prev >= 0 else None
                x = self.posterior_step(x, x0, abar, abar_prev, z)
        return x, records
