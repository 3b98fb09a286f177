"""The model contract: an abstract base every family implements, and optional capabilities.

Every model is a `GenerativeModel` (an `nn.Module` that owns its networks):
  - `make_optimizers()` -> dict of named optimizers,
  - `training_step(batches, optimizers, ctx)` -> dict of detached scalar tensors named "group/name";
    `batches()` returns the next (images in [-1, 1], labels); `ctx` is a `StepContext`,
  - `sample(n, rng)` -> (n, C, H, W) images in [-1, 1], and `sample_grid(rng)` -> (images, nrow),
    the universal path of the loop's grid, the evaluation and the Hub card.
Class attributes: `name` (set by `register_model`), `config_class`, `training_only` (sub-networks an
inference export drops), `tiny` (a config small enough for the test suite), `ema_of` (the
sub-network whose moving average samples use when `config.ema_decay > 0`) and `phases` (the parts of
a step that a manual step may run alone, e.g. a GAN's ("D", "G"); a model with more than one honours
`ctx.phases`, and the networks of a phase not run stay exactly as they were).

Training services come from config fields every model has (ImageConfig): `lr_warmup`, `lr_decay` and
`grad_clip` through `nn.optim.optimizer_step`, and `ema_decay`: the model then owns
`self.ema = EMA(<ema_of network>)`, updated by `end_step(ctx)` at the end of each training step and used
by `sampling_network()` in eval mode. With ema_decay 0 there is no `ema` submodule at all.

Optional capabilities are runtime-checkable protocols, checked with `isinstance`, never by name:
  HasLatents     latent_spec() and generate(**latents): explorer sliders, sweeps, interpolation
  HasEncoder     encode(x) -> (mean, log_var): reconstructions, encoding an uploaded image
  HasLikelihood  nll(x01, rng, k) -> nats per image (B,): likelihood metrics (nats, bits/dim)
  HasClasses     num_classes > 0 and sample(n, rng, y=...) : class-conditional sampling, class accuracy
  HasCodes       infer_codes(x) -> {"cat": ...}: code accuracy of InfoGAN-like models
  HasTrajectory  trajectory(n, rng, y, *, steps, guidance, sampler, noise) -> [(level, x_t, x0_hat)] and
                 denoising_strip(rng, seeds, points) -> one image: the path from noise to image
  HasSamplingKnobs  sampling_knobs() -> {name: {type, low/high or choices, default}}: the keyword
                 arguments `sample` takes (steps, guidance, sampler), for sliders built by capability
"""
from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..config import ConfigError, param
from .nn.ema import EMA

Batches = Callable[[], "tuple[Tensor, Tensor]"]


@dataclass(frozen=True)
class StepContext:
    """What the loop tells a model at each training step."""
    step: int                       # optimizer steps done so far: warm-up, decay, lazy regularization
    rng: torch.Generator            # the loop's generator: batches, latents, noise, timesteps
    diagnostics: bool = False       # a log step: also compute what costs extra (R1 norm, grad norms)
    total_steps: int | None = None  # the run's planned length (for LR decay); None: unknown
    phases: tuple[str, ...] | None = None   # the model's phases this step runs (a manual D-only step); None: all


@dataclass
class ImageConfig:
    """Fields every model config has; the training loop fills the first three from the data set."""
    channels: int = param(1, "Image channels (set from the data set).", choices=(1, 3), derived=True)
    image_size: int = param(28, "Image side in pixels (set from the data set).",
                            choices=(28, 32, 64), derived=True)
    num_classes: int = param(10, "Number of classes (set from the data set).", low=1, derived=True)
    lr_warmup: int = param(0, "Steps of linear learning-rate warm-up from 0; 0 turns it off.", low=0)
    lr_decay: str = param("none", "Learning-rate decay over the run after warm-up: none, cosine to 0 "
                          "or linear to 0 (a pure function of the step, so resume stays bit-exact).",
                          choices=("none", "cosine", "linear"))
    grad_clip: float = param(0.0, "Clip each optimizer's gradient norm to this; 0 turns it off.",
                             low=0.0, high=1e6)
    ema_decay: float = param(0.0, "Decay of an exponential moving average of the sampling network's "
                             "weights, used for every sample; 0 turns it off (e.g. 0.999).",
                             low=0.0, high=0.99999)


@dataclass
class LatentSpec:
    """What a latent model's generator takes: z of any shape, and optionally a class and codes."""
    z_dim: int                                              # number of elements of z (prod(z_shape))
    z_prior: str = "normal"                                 # "normal": N(0, I); "uniform": U[-1, 1]
    num_classes: int = 0                                    # > 0: a class label y is an input (cGAN)
    categorical: list[int] = field(default_factory=list)    # sizes of categorical codes
    continuous: int = 0                                     # number of continuous codes
    continuous_range: tuple[float, float] = (-1.0, 1.0)
    z_shape: tuple[int, ...] = ()                           # () means (z_dim,): a vector

    def __post_init__(self):
        self.z_shape = tuple(self.z_shape) or (self.z_dim,)
        if math.prod(self.z_shape) != self.z_dim:
            raise ConfigError(f"z_shape {self.z_shape} does not hold z_dim={self.z_dim} elements")
        self.continuous_range = tuple(self.continuous_range)

    @property
    def is_vector(self) -> bool:
        """Per-dimension sliders make sense only for vector latents."""
        return len(self.z_shape) == 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sample_prior(spec: LatentSpec, n: int, rng: torch.Generator | None, device) -> dict:
    """Draw n latents from the prior the spec describes: z (n, *z_shape), y, categorical and continuous codes."""
    latents = {}
    shape = (n, *spec.z_shape)
    if spec.z_prior == "normal":
        latents["z"] = torch.randn(shape, generator=rng, device=device)
    else:
        latents["z"] = torch.rand(shape, generator=rng, device=device) * 2 - 1
    if spec.num_classes:
        latents["y"] = torch.randint(spec.num_classes, (n,), generator=rng, device=device)
    if spec.categorical:
        latents["cat"] = torch.stack([torch.randint(k, (n,), generator=rng, device=device)
                                      for k in spec.categorical], dim=1)          # (n, n_cat)
    if spec.continuous:
        low, high = spec.continuous_range
        latents["cont"] = low + (high - low) * torch.rand(
            n, spec.continuous, generator=rng, device=device)                      # (n, n_cont)
    return latents


# ---------------------------------------------------------------- capabilities
@runtime_checkable
class HasLatents(Protocol):
    def latent_spec(self) -> LatentSpec: ...
    def generate(self, **latents) -> Tensor: ...


@runtime_checkable
class HasEncoder(Protocol):
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class HasLikelihood(Protocol):
    def nll(self, x01: Tensor, rng: torch.Generator | None = None, k: int = 1) -> Tensor: ...


@runtime_checkable
class HasCodes(Protocol):
    def infer_codes(self, x: Tensor) -> dict: ...


@runtime_checkable
class HasTrajectory(Protocol):
    """An iterative sampler whose intermediate states can be shown: at each sampling step the state x_t and
    the model's prediction x0_hat of the final image; level 1 is pure noise, 0 a clean image. The same
    `noise` (n, C, H, W) gives the same images with a deterministic sampler, whatever the guidance."""
    def trajectory(self, n: int, rng: torch.Generator | None = None, y: Tensor | None = None, *,
                   steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                   noise: Tensor | None = None) -> list[tuple[float, Tensor, Tensor]]: ...

    def denoising_strip(self, rng: torch.Generator | None = None, seeds: int = 3, points: int = 8) -> Tensor: ...


@runtime_checkable
class HasSamplingKnobs(Protocol):
    """`sample(n, rng, y, **knobs)` takes these keyword arguments, e.g. {"guidance": {"type": float, "low": 0,
    "high": 8, "default": 1.0}, "steps": {...}, "sampler": {"type": str, "choices": (...), "default": ...}}."""
    def sampling_knobs(self) -> dict[str, dict]: ...


def has_classes(model) -> bool:
    """A class-conditional model: its samples can be asked for by class (`sample(n, rng, y=...)`)."""
    return getattr(model, "conditional", False) and getattr(model.config, "num_classes", 0) > 0


# ---------------------------------------------------------------- the base classes
class GenerativeModel(nn.Module, abc.ABC):
    """The contract every model family implements; see the module docstring."""
    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = ImageConfig
    training_only: ClassVar[tuple[str, ...]] = ()     # sub-networks an inference export drops
    tiny: ClassVar[dict] = {}                         # a config small enough for the test suite
    conditional: ClassVar[bool] = False               # sample(n, rng, y=labels) is meaningful
    ema_of: ClassVar[str] = ""                        # the sampling network an EMA follows ("": none)
    ema_samples_only: ClassVar[bool] = True           # the raw `ema_of` network serves inference only by sampling
    phases: ClassVar[tuple[str, ...]] = ("step",)     # a step's phases a manual step may run alone (GAN: D, G)

    def __init__(self, config):
        super().__init__()
        self.config = config

    def attach_ema(self) -> None:
        """Own `self.ema`, a moving average of the `ema_of` network, when config.ema_decay > 0.

        Call it at the end of `__init__`, after weight initialization (it copies the network).
        """
        if getattr(self.config, "ema_decay", 0.0) > 0:
            if not self.ema_of:
                raise ConfigError(f"{self.name} keeps no moving average of its weights; set ema_decay to 0")
            self.ema = EMA(getattr(self, self.ema_of), self.config.ema_decay)

    def sampling_network(self) -> nn.Module:
        """The network samples come from: its EMA in eval mode when the model keeps one, else the
        raw network (every training forward pass uses the raw network)."""
        ema = getattr(self, "ema", None)
        return ema if ema is not None and not self.training else getattr(self, self.ema_of)

    def inference_drop(self) -> tuple[str, ...]:
        """What an inference export leaves out: `training_only`, and the raw `ema_of` network when the model
        keeps its moving average and sampling is all that network serves (the average then samples alone)."""
        raw = (self.ema_of,) if getattr(self, "ema", None) is not None and self.ema_samples_only else ()
        return tuple(self.training_only) + raw

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @abc.abstractmethod
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; their state is checkpointed under these names."""

    @abc.abstractmethod
    def training_step(self, batches: Batches, optimizers: dict[str, torch.optim.Optimizer],
                      ctx: StepContext) -> dict[str, Tensor]:
        """One training step (all its phases); returns detached scalar tensors named "group/name"."""

    @abc.abstractmethod
    def sample(self, n: int, rng: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """n images in [-1, 1], shape (n, C, H, W); `y` asks a conditional model for classes."""

    def end_step(self, ctx: StepContext) -> None:
        """Called by `training_step` after its last update: the EMA weights (if any) follow the network."""
        ema = getattr(self, "ema", None)
        if ema is not None:
            ema.update(getattr(self, self.ema_of), ctx.step)

    def sample_grid(self, rng: torch.Generator) -> tuple[Tensor, int]:
        """The loop's fixed sample grid: (images, nrow); rows are classes for conditional models."""
        rows = min(self.config.num_classes, 10) if has_classes(self) else 8
        y = torch.arange(rows, device=self.device).repeat_interleave(rows) if has_classes(self) else None
        return self.sample(rows * rows, rng, y=y), rows

    def check_config(self):
        if self.config.image_size not in (28, 32, 64):
            raise ConfigError(f"{self.name} supports image sizes 28, 32 and 64, "
                              f"got {self.config.image_size}")


class LatentModel(GenerativeModel):
    """A model with an explicit latent input: x = generate(**latents), latents from a prior."""

    @abc.abstractmethod
    def latent_spec(self) -> LatentSpec:
        """What generate() takes; every UI builds its controls from it."""

    @abc.abstractmethod
    def generate(self, **latents) -> Tensor:
        """Images in [-1, 1] from latents shaped as `latent_spec()` says."""

    def sample_latents(self, n: int, rng: torch.Generator | None = None) -> dict:
        """Latents from the prior, on the model's device."""
        return sample_prior(self.latent_spec(), n, rng, self.device)

    def grid_latents(self, rng: torch.Generator) -> tuple[dict, int]:
        """Latents for the fixed sample grid; classes or the first categorical code run down rows."""
        spec = self.latent_spec()
        rows = min(spec.num_classes or (spec.categorical[0] if spec.categorical else 8), 10)
        latents = self.sample_latents(rows * rows, rng)
        row_index = torch.arange(rows, device=self.device).repeat_interleave(rows)   # (rows*rows,)
        if spec.num_classes:
            latents["y"] = row_index
        elif spec.categorical:
            latents["cat"][:, 0] = row_index
        return latents, rows

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        latents = self.sample_latents(n, rng)
        if y is not None and "y" in latents:
            latents["y"] = y.to(latents["y"].device)
        return self.generate(**latents)

    @torch.no_grad()
    def sample_grid(self, rng: torch.Generator) -> tuple[Tensor, int]:
        latents, rows = self.grid_latents(rng)
        return self.generate(**latents), rows
