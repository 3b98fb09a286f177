"""Configuration dataclasses shared by every model, the training loop, the CLI and the UIs.

A config field is declared with `param(...)`, which records help text, choices and a range.
The CLI turns those into flags and the dashboard into widgets, so neither needs to know any
particular model.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which field and why."""


def param(default: Any, help: str, choices: tuple | None = None, low: float | None = None,
          high: float | None = None, log: bool = False, derived: bool = False):
    """A dataclass field with the metadata the CLI and the dashboard build their controls from."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "log": log, "derived": derived}
    return field(default=default, metadata=meta)


def field_specs(config_class) -> list[dict]:
    """Describe each field of a config dataclass: name, type, default, help, choices, range."""
    specs = []
    for f in dataclasses.fields(config_class):
        meta = dict(f.metadata)
        specs.append({
            "name": f.name,
            "type": _field_type(f),
            "default": f.default,
            "help": meta.get("help", ""),
            "choices": meta.get("choices"),
            "low": meta.get("low"),
            "high": meta.get("high"),
            "log": meta.get("log", False),
            "derived": meta.get("derived", False),
        })
    return specs


def _field_type(f) -> type:
    names = {"int": int, "float": float, "str": str, "bool": bool,
             "int | None": int, "str | None": str, "float | None": float}
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return names.get(t, str)


def validate(config) -> None:
    """Check every field of a config dataclass against its type, choices and range."""
    for spec in field_specs(type(config)):
        name, value = spec["name"], getattr(config, spec["name"])
        if value is None and spec["default"] is None:
            continue
        expected = spec["type"]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            setattr(config, name, value)
        if expected is bool and not isinstance(value, bool) or \
                expected is not bool and (isinstance(value, bool) or not isinstance(value, expected)):
            raise ConfigError(f"{type(config).__name__}.{name} must be {expected.__name__}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):     # NaN passes every comparison
            raise ConfigError(f"{type(config).__name__}.{name} must be a finite number, got {value!r}")
        if spec["choices"] is not None and value not in spec["choices"]:
            raise ConfigError(f"{type(config).__name__}.{name} must be one of "
                              f"{', '.join(map(str, spec['choices']))}; got {value!r}")
        if spec["low"] is not None and value < spec["low"]:
            raise ConfigError(f"{type(config).__name__}.{name} must be >= {spec['low']}, got {value!r}")
        if spec["high"] is not None and value > spec["high"]:
            raise ConfigError(f"{type(config).__name__}.{name} must be <= {spec['high']}, got {value!r}")


def from_dict(config_class, values: dict):
    """Build a config dataclass from a dict, refusing unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {config_class.__name__} field(s): {', '.join(unknown)}; "
                          f"known fields: {', '.join(sorted(known))}")
    config = config_class(**values)
    validate(config)
    return config


DEFAULT_MODEL = "dcgan"        # what a new run trains unless told otherwise (the CLI, the Train page)
DATASETS = ("mnist", "fashion", "emoji64", "celeba64", "imagefolder", "synthetic")


@dataclass
class TrainConfig:
    """Everything the training loop needs besides the model's own config."""
    model: str = param(DEFAULT_MODEL, "Model name (see --list-models).")
    dataset: str = param("mnist", "Data set.", choices=DATASETS)
    data_root: str = param("./data", "Folder where data sets are downloaded and cached.")
    data_path: str | None = param(None, "A folder of images (imagefolder, or celeba64 from an "
                                        "img_align_celeba folder); overrides data_root.")
    image_size: int | None = param(None, "Image side for imagefolder (default 64) and synthetic "
                                         "(default 28); MNIST and fashion are 28, emoji64 and celeba64 are 64.", low=8, high=256)
    channels: int = param(1, "Channels of the synthetic set (1 or 3).", choices=(1, 3))
    steps: int = param(3000, "Training steps (generator updates) in total.", low=1)
    batch_size: int = param(64, "Images per batch.", low=1, high=4096)
    seed: int = param(0, "Random seed (weights, data order, latents).", low=0)
    device: str = param("auto", "Device: auto picks cuda, then mps, then cpu.",
                        choices=("auto", "cpu", "cuda", "mps"))
    log_every: int = param(50, "Steps between metric lines (values are averaged over them).", low=1)
    sample_every: int = param(250, "Steps between sample grids.", low=1)
    early_grids: bool = param(True, "Also draw grids at steps 0, 1, 2, 4, 8, ... before the first sample_every "
                              "(off for long runs where a grid is slow, e.g. 64 px diffusion on a CPU: "
                              "then grids at step 0 and every sample_every steps).")
    checkpoint_every: int = param(500, "Steps between checkpoints.", low=1)
    max_images: int | None = param(None, "Use at most this many training images (None: all).", low=1)
    amp: str = param("auto", "Mixed precision: bf16 autocast (CUDA only); auto is bf16 on CUDA, "
                     "off elsewhere.", choices=("auto", "off", "bf16"))
    channels_last: str = param("auto", "channels_last memory format for convolutional models; auto is "
                               "on for CUDA, and on the CPU for all-convolutional models (no Linear "
                               "layer, e.g. DCGAN: measured faster there).",
                               choices=("auto", "on", "off"))
    compile: bool = param(False, "torch.compile the networks (slow first steps, then faster).")
    eval_every: int = param(0, "Steps between quick evaluations (judge FID, coverage, code accuracy, "
                               "ELBO on 2,000 images) logged as eval/*; 0 turns them off.", low=0)

    def __post_init__(self):
        validate(self)


def to_dict(config) -> dict:
    """A config dataclass as a JSON-able dict."""
    return dataclasses.asdict(config)
