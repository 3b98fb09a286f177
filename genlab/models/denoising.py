"""What DDPM (ddpm.py) and flow matching (flow.py) share: the U-Net and its config, classifier-free
guidance (Ho & Salimans 2022), the EMA, low-discrepancy time sampling, the per-time loss buckets, and the
sampling capabilities (`HasLatents` with the starting noise as an image-shaped z, `HasTrajectory`,
`HasSamplingKnobs`) built on one method each family implements:

    integrate(noise, y, steps, guidance, sampler, rng, record) -> (images, [(level, x_t, x0_hat), ...])

`level` is the noise level of x_t in [0, 1] for both families: 1 is pure noise, 0 a clean image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import ConfigError, param
from .base import GenerativeModel, ImageConfig, LatentSpec, StepContext
from .nn.optim import adam, optimizer_step
from .nn.unet import UNet

AUTO_CHANNEL_MULT = {7: (1, 2), 8: (1, 2), 14: (1, 2, 2), 16: (1, 2, 2), 28: (1, 2, 2), 32: (1, 2, 2, 2),
                     64: (1, 2, 2, 2)}   # by the resolution the U-Net runs at: image_size / patch
GUIDANCE_RANGE = (0.0, 8.0)
STEPS_RANGE = (1, 100)          # what a UI offers
MAX_STEPS = 1000                # what a call may ask for


@dataclass
class DenoiserConfig(ImageConfig):
    ema_decay: float = param(0.999, "Decay of an exponential moving average of the network's weights, used "
                             "for every sample; 0 turns it off.", low=0.0, high=0.99999)
    width: int = param(64, "Channels of the U-Net's first level.", low=4, high=512)
    channel_mult: str = param("auto", "Width multipliers per resolution level, comma separated (e.g. 1,2,2: "
                              "28 -> 14 -> 7); auto: 1,2,2 at 28 px, 1,2,2,2 at 32 and 64 px (at the size "
                              "after patching: 1,2,2,2 for 64 px with patch 2).")
    patch: int = param(1, "Fold each p x p block of pixels into channels around the U-Net (space-to-depth, "
                       "Hoogeboom et al. 2023): 2 runs a 64 px model at 32x32, about 4x cheaper.", choices=(1, 2, 4))
    blocks: int = param(2, "Residual blocks per level (the way up has one more).", low=1, high=8)
    attention: bool = param(True, "Self-attention at the lowest resolution.")
    dropout: float = param(0.1, "Dropout inside the residual blocks (0.1 in Ho et al. 2020).", low=0.0, high=0.9)
    class_conditional: bool = param(True, "Condition on the class (classifier-free guidance needs it).")
    p_uncond: float = param(0.1, "Probability of dropping the class to the null class while training "
                            "(Ho & Salimans 2022).", low=0.0, high=1.0)
    guidance: float = param(1.0, "Classifier-free guidance weight w: (1 + w) eps(x, c) - w eps(x, null); "
                            "0 is the plain conditional model.", low=0.0, high=20.0)
    sampling_steps: int = param(50, "Network evaluations per sample (the sampling cost).", low=1, high=1000)
    lr: float = param(2e-4, "Adam learning rate (2e-4 in Ho et al. 2020).", low=1e-6, high=1.0, log=True)


def parse_channel_mult(config: DenoiserConfig) -> tuple[int, ...]:
    """The per-level multipliers; ConfigError in one sentence for a bad string or image size."""
    if config.channel_mult == "auto":
        return AUTO_CHANNEL_MULT[config.image_size // config.patch]
    try:
        mult = tuple(int(part) for part in config.channel_mult.split(","))
    except ValueError:
        mult = ()
    if not mult or min(mult) < 1 or len(mult) > 5:
        raise ConfigError(f"channel_mult must be auto or 1 to 5 positive integers like 1,2,2; "
                          f"got {config.channel_mult!r}")
    return mult


def stratified_uniform(n: int, rng: torch.Generator | None, device) -> Tensor:
    """n times in [0, 1), each uniform, spread evenly: (u + i / n) mod 1 (Kingma et al. 2021, VDM §I.1).

    Every third of [0, 1) holds at least floor(n / 3) of them, so the per-bucket losses always exist."""
    u = torch.rand(1, generator=rng, device=device)
    return (u + torch.arange(n, device=device) / n) % 1.0                          # (n,)


def bucket_logs(per_sample: Tensor, fraction: Tensor) -> dict[str, Tensor]:
    """Mean loss over the samples whose time fraction lies in each third of [0, 1): no host sync."""
    if per_sample.numel() < 3:
        return {}
    bucket = (fraction * 3).long().clamp(0, 2)                                     # (B,)
    one_hot = nn.functional.one_hot(bucket, 3).to(per_sample.dtype)               # (B, 3)
    means = (per_sample[:, None] * one_hot).sum(0) / one_hot.sum(0).clamp(min=1)  # (3,)
    return {f"loss/t_{name}": means[i] for i, name in enumerate(("low", "mid", "high"))}


class DenoisingModel(GenerativeModel):
    """A U-Net `network` trained to predict noise or velocity; subclasses give the loss and the sampler."""
    config_class = DenoiserConfig
    ema_of = "network"
    samplers: tuple[str, ...] = ()

    def __init__(self, config: DenoiserConfig):
        super().__init__(config)
        self.check_config()
        mult = parse_channel_mult(config)                  # odd sizes are fine: 7 -> 4 -> 7 (see UNet)
        self.conditional = config.class_conditional
        self.network = UNet(config.channels, config.width, mult, config.blocks,
                            config.num_classes if self.conditional else 0, config.dropout, config.attention,
                            config.patch)

    # ---- training helpers
    def make_optimizers(self) -> dict:
        return {"network": adam(self.network.parameters(), self.config.lr, 0.9, 0.999)}

    def training_labels(self, labels: Tensor, rng: torch.Generator | None) -> Tensor | None:
        """The class, replaced by the null class with probability p_uncond; None when unconditional."""
        if not self.conditional:
            return None
        drop = torch.rand(labels.shape, generator=rng, device=labels.device) < self.config.p_uncond
        return torch.where(drop, torch.full_like(labels, self.config.num_classes), labels)

    def finish_step(self, per_sample: Tensor, fraction: Tensor, optimizers: dict, ctx: StepContext) -> dict:
        """Adam on the mean of the per-sample losses (B,), the EMA, and the logs (total and per third of t)."""
        loss = per_sample.mean()
        optimizer_step(optimizers["network"], loss, ctx, self.config)
        self.end_step(ctx)
        return {"loss/total": loss.detach(), **bucket_logs(per_sample.detach(), fraction)}

    # ---- guidance
    def guided(self, network: nn.Module, x: Tensor, t: Tensor, y: Tensor | None, w: float) -> Tensor:
        """Ho & Salimans 2022 eq. 6: (1 + w) f(x, c) - w f(x, null), both halves in one batched call."""
        if y is None or w == 0:
            return network(x, t, y)
        null = torch.full_like(y, self.config.num_classes)   # the UNet's null class
        both = network(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, C, H, W)
        conditional, unconditional = both.chunk(2)
        return (1 + w) * conditional - w * unconditional

    # ---- sampling
    def resolve(self, steps, guidance, sampler) -> tuple[int, float, str]:
        """The call's knobs, each defaulting to the config; ConfigError for values out of range."""
        c = self.config
        try:
            steps = c.sampling_steps if steps is None else int(steps)
            guidance = c.guidance if guidance is None else float(guidance)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"steps must be a whole number and guidance a number; got {steps!r}, "
                              f"{guidance!r}") from None
        sampler = c.sampler if sampler is None else sampler
        if not 1 <= steps <= MAX_STEPS:
            raise ConfigError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
        if not 0 <= guidance <= 1000:
            raise ConfigError(f"guidance must be between 0 and 1000, got {guidance}")
        if sampler not in self.samplers:
            raise ConfigError(f"sampler must be one of {', '.join(self.samplers)}; got {sampler!r}")
        return steps, guidance, sampler

    def start(self, n: int, rng: torch.Generator | None, y: Tensor | None,
              noise: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The starting noise (n, C, H, W), drawn first, then the classes (random ones when y is None).
        y = num_classes, the null class, asks for an unconditional sample (guidance then changes nothing)."""
        c = self.config
        if noise is None:
            noise = torch.randn((n, c.channels, c.image_size, c.image_size), generator=rng, device=self.device)
        if not self.conditional:
            return noise, None
        if y is None:
            y = torch.randint(c.num_classes, (n,), generator=rng, device=self.device)
        y = y.to(self.device, torch.long)
        if y.shape != (n,) or y.min() < 0 or y.max() > c.num_classes:
            raise ConfigError(f"y must be {n} class indices in 0..{c.num_classes - 1} "
                              f"({c.num_classes}: the null class, an unguided sample)")
        return noise, y

    def integrate(self, noise: Tensor, y: Tensor | None, steps: int, guidance: float, sampler: str,
                  rng: torch.Generator | None, record: bool) -> tuple[Tensor, list]:
        """From noise to images; with record, [(level, x_t, x0_hat)] at every step."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None, y: Tensor | None = None, *,
               steps: int | None = None, guidance: float | None = None, sampler: str | None = None) -> Tensor:
        """n images in [-1, 1], (n, C, H, W); the knobs default to the config's."""
        steps, guidance, sampler = self.resolve(steps, guidance, sampler)
        noise, y = self.start(n, rng, y)
        images, _ = self.integrate(noise, y, steps, guidance, sampler, rng, record=False)
        return images.clamp(-1, 1)

    # ---- HasLatents: the starting noise is the latent (Song et al. 2021 §5.3: DDIM's x_T encodes the image)
    def latent_spec(self) -> LatentSpec:
        """z is the (C, H, W) starting noise, N(0, I); a class y when conditional."""
        c = self.config
        shape = (c.channels, c.image_size, c.image_size)
        return LatentSpec(z_dim=math.prod(shape), z_shape=shape,
                          num_classes=c.num_classes if self.conditional else 0)

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor | None = None, *, steps: int | None = None,
                 guidance: float | None = None, sampler: str | None = None, **_) -> Tensor:
        """Images in [-1, 1] from the starting noise z (n, C, H, W) with the knobs (default: the config's); a
        function of (z, y, knobs): a stochastic sampler (ancestral, ddim with eta > 0) draws its noise from a
        fixed seed."""
        steps, guidance, sampler = self.resolve(steps, guidance, sampler)
        noise, y = self.start(z.shape[0], None, y, noise=z.to(self.device))
        rng = torch.Generator(device=self.device).manual_seed(0)
        images, _ = self.integrate(noise, y, steps, guidance, sampler, rng, record=False)
        return images.clamp(-1, 1)

    # ---- HasTrajectory
    @torch.no_grad()
    def trajectory(self, n: int, rng: torch.Generator | None = None, y: Tensor | None = None, *,
                   steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                   noise: Tensor | None = None) -> list[tuple[float, Tensor, Tensor]]:
        """[(level, x_t, x0_hat)] at each sampling step, then (0.0, image, image): the last image equals
        `sample` from the same rng. `noise` (n, C, H, W) fixes the start, so the deterministic samplers
        give the same images for the same noise whatever the guidance."""
        steps, guidance, sampler = self.resolve(steps, guidance, sampler)
        noise, y = self.start(n, rng, y, noise=None if noise is None else noise.to(self.device))
        images, records = self.integrate(noise, y, steps, guidance, sampler, rng, record=True)
        return records + [(0.0, images.clamp(-1, 1), images.clamp(-1, 1))]

    @torch.no_grad()
    def denoising_strip(self, rng: torch.Generator | None = None, seeds: int = 3, points: int = 8, *,
                        steps: int | None = None, guidance: float | None = None,
                        sampler: str | None = None) -> Tensor:
        """One image (C, 2*seeds*(H+2), points*(W+2)) in [-1, 1]: per seed a row of x_t above a row of
        x0_hat at `points` steps evenly spread from pure noise to the final image."""
        path = self.trajectory(seeds, rng, steps=steps, guidance=guidance, sampler=sampler)
        picks = torch.linspace(0, len(path) - 1, min(points, len(path))).round().long().tolist()
        x_t = torch.stack([path[i][1] for i in picks], dim=1)                      # (seeds, P, C, H, W)
        x0 = torch.stack([path[i][2] for i in picks], dim=1)                       # (seeds, P, C, H, W)
        tiles = torch.stack([x_t, x0], dim=1).clamp(-1, 1)                         # (seeds, 2, P, C, H, W)
        tiles = nn.functional.pad(tiles, (1, 1, 1, 1), value=-1.0)                 # (seeds, 2, P, C, H+2, W+2)
        s, two, p, c, h, w = tiles.shape
        return tiles.permute(3, 0, 1, 4, 2, 5).reshape(c, s * two * h, p * w)      # (C, rows*(H+2), P*(W+2))

    # ---- HasSamplingKnobs
    def sampling_knobs(self) -> dict[str, dict]:
        """The sampling controls a UI can offer: name -> type, range or choices, and the default."""
        c = self.config
        knobs = {"steps": {"type": int, "low": STEPS_RANGE[0], "high": STEPS_RANGE[1], "default": c.sampling_steps},
                 "sampler": {"type": str, "choices": self.samplers, "default": c.sampler}}
        if self.conditional:
            knobs["guidance"] = {"type": float, "low": GUIDANCE_RANGE[0], "high": GUIDANCE_RANGE[1],
                                 "default": c.guidance}
        return knobs
