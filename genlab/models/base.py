"""The registry of models and the small contract every model offers.

Every model is an `nn.Module` that owns its networks and offers:
  - `make_optimizers()` -> dict of named optimizers,
  - `training_step(next_batch, optimizers, generator, measure)` -> dict of named scalar tensors,
  - `sample_latents(n, generator)` -> dict of latent tensors drawn from the prior,
  - `generate(**latents)` -> images in [-1, 1],
  - `latent_spec()` -> a `LatentSpec` from which any UI builds its controls,
  - `grid_latents(generator)` -> (latents, nrow) for the fixed sample grid.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ConfigError, from_dict, param

MODELS: dict[str, type] = {}


def register_model(name: str):
    """Register a model class under `name` in the one plain dict of models."""
    def decorate(cls):
        cls.name = name
        MODELS[name] = cls
        return cls
    return decorate


def get_model_class(name: str):
    """The model class registered under `name`, or a ConfigError listing the known names."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, model_config: dict | None = None):
    """Build a registered model from a plain dict of its config fields."""
    cls = get_model_class(name)
    return cls(from_dict(cls.config_class, model_config or {}))


@dataclass
class ImageConfig:
    """Fields every model config has; the training loop fills them from the data set."""
    channels: int = param(1, "Image channels (set from the data set).", choices=(1, 3), derived=True)
    image_size: int = param(28, "Image side in pixels (set from the data set).",
                            choices=(28, 32, 64), derived=True)
    num_classes: int = param(10, "Number of classes (set from the data set).", low=1, derived=True)


@dataclass
class LatentSpec:
    """What a model's generator takes: z, and optionally a class and InfoGAN codes."""
    z_dim: int
    z_prior: str = "normal"                      # "normal": N(0, I); "uniform": U[-1, 1]
    num_classes: int = 0                         # > 0: a class label y is an input (cGAN)
    categorical: list[int] = field(default_factory=list)   # sizes of categorical codes
    continuous: int = 0                          # number of continuous codes
    continuous_range: tuple[float, float] = (-1.0, 1.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sample_prior(spec: LatentSpec, n: int, generator: torch.Generator | None, device) -> dict:
    """Draw n latents from the prior the spec describes: z, y, categorical and continuous codes."""
    latents = {}
    if spec.z_prior == "normal":
        latents["z"] = torch.randn(n, spec.z_dim, generator=generator, device=device)
    else:
        latents["z"] = torch.rand(n, spec.z_dim, generator=generator, device=device) * 2 - 1
    if spec.num_classes:
        latents["y"] = torch.randint(spec.num_classes, (n,), generator=generator, device=device)
    if spec.categorical:
        latents["cat"] = torch.stack([torch.randint(k, (n,), generator=generator, device=device)
                                      for k in spec.categorical], dim=1)          # (n, n_cat)
    if spec.continuous:
        low, high = spec.continuous_range
        latents["cont"] = low + (high - low) * torch.rand(
            n, spec.continuous, generator=generator, device=device)                # (n, n_cont)
    return latents


class GenerativeModel(nn.Module):
    """Base class: holds the config and implements the parts of the contract all models share."""
    name = "base"
    config_class = ImageConfig

    def __init__(self, config):
        super().__init__()
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def latent_spec(self) -> LatentSpec:
        raise NotImplementedError

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> dict:
        """Latents from the prior, on the model's device."""
        return sample_prior(self.latent_spec(), n, generator, self.device)

    def grid_latents(self, generator: torch.Generator) -> tuple[dict, int]:
        """Latents for the fixed sample grid; classes or the first categorical code run down rows."""
        spec = self.latent_spec()
        rows = spec.num_classes or (spec.categorical[0] if spec.categorical else 8)
        rows = min(rows, 10)
        latents = self.sample_latents(rows * rows, generator)
        row_index = torch.arange(rows, device=self.device).repeat_interleave(rows)   # (rows*rows,)
        if spec.num_classes:
            latents["y"] = row_index
        elif spec.categorical:
            latents["cat"][:, 0] = row_index
        return latents, rows

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the prior, in [-1, 1], shape (n, C, H, W)."""
        return self.generate(**self.sample_latents(n, generator))

    def check_config(self):
        if self.config.image_size not in (28, 32, 64):
            raise ConfigError(f"{self.name} supports image sizes 28, 32 and 64, "
                              f"got {self.config.image_size}")


def upsampling_plan(image_size: int) -> tuple[int, int]:
    """(start side, number of x2 stages): 28 = 7*2*2, 32 = 4*2*2*2, 64 = 4*2*2*2*2."""
    plans = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
    if image_size not in plans:
        raise ConfigError(f"image size {image_size} is not supported; use 28, 32 or 64")
    return plans[image_size]


def init_dcgan_weights(module: nn.Module) -> None:
    """Radford 2015, sec. 4: all weights from N(0, 0.02); norm scales from N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)):
        if module.weight is not None:
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
