"""Checkpoints: one safetensors file holding plain tensors only, with a JSON header that says
how to rebuild the model (name + config) and, for training checkpoints, how to resume
(step, optimizer param groups). Nothing is unpickled.

    model.<key>                    model weights (state_dict)
    optim.<name>.<i>.<key>         optimizer state of parameter i
    rng.torch, rng.cuda, rng.loop  random number generator states
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import ConfigError, to_dict
from .models import build_model
from .runs import atomic_write_bytes, checkpoint_path

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, truncated or does not match its model."""


class DroppedPart(torch.nn.Module):
    """Stands in for a sub-network an inference-only export left out (e.g. a GAN's discriminator)."""

    def __init__(self, name: str):
        super().__init__()
        self.part = name

    def forward(self, *args, **kwargs):
        raise CheckpointError(f"this checkpoint was exported without its {self.part} (inference only): "
                              f"load the run's full checkpoint to use it")


def drop_parts(model, parts) -> None:
    """Replace the named top-level sub-networks of a model by `DroppedPart`s, in place."""
    for part in parts:
        if not isinstance(getattr(model, part, None), torch.nn.Module):
            raise CheckpointError(f"{model.name} has no sub-network {part!r} to leave out")
        setattr(model, part, DroppedPart(part))


def save_checkpoint(path: Path, model, meta: dict, optimizers: dict | None = None,
                    rng: dict | None = None, half: bool = False) -> None:
    """Write model weights (and optionally optimizer and RNG state) atomically to one file."""
    from safetensors.torch import save
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if half and value.is_floating_point():
            value = value.half()
        tensors[f"model.{key}"] = value.contiguous()
    groups = {}
    for name, optimizer in (optimizers or {}).items():
        state = optimizer.state_dict()
        groups[name] = state["param_groups"]
        for index, param_state in state["state"].items():
            for key, value in param_state.items():
                value = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{name}.{index}.{key}"] = value.detach().cpu().contiguous()
    for name, value in (rng or {}).items():
        tensors[f"rng.{name}"] = value.cpu().contiguous()
    header = dict(meta, format=FORMAT, model=model.name,
                  model_config=meta.get("model_config") or to_dict(model.config), optim_groups=groups)
    atomic_write_bytes(Path(path), save(tensors, metadata={"genlab": json.dumps(header)}))


def resolve(path: str | Path) -> Path:
    """A checkpoint file from a file path, a run folder or a folder of one checkpoint."""
    path = Path(path)
    if path.is_dir():
        if checkpoint_path(path).exists():
            return checkpoint_path(path)
        files = sorted(path.glob("*.safetensors"))
        if len(files) == 1:
            return files[0]
        raise CheckpointError(f"{path} holds no checkpoint (expected checkpoints/latest.safetensors "
                              f"or one .safetensors file)")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(header, tensors) of a checkpoint file; refuses anything that is not a genlab checkpoint."""
    from safetensors import SafetensorError, safe_open
    path = resolve(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): "
                              f"{error}") from None
    if "genlab" not in metadata:
        raise CheckpointError(f"{path} has no genlab header: it was not written by genlab")
    try:
        header = json.loads(metadata["genlab"])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: the genlab header is not valid JSON ({error})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {header.get('format')} is not supported "
                              f"(this genlab reads format {FORMAT})")
    return header, tensors


def model_from_checkpoint(header: dict, tensors: dict, path="checkpoint"):
    """Rebuild the model a header names and load its weights strictly."""
    try:
        model = build_model(header["model"], header["model_config"])
    except (ConfigError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: cannot rebuild the model from its header: {error}") from None
    drop_parts(model, header.get("dropped", []))
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    reference = model.state_dict()
    for key, value in weights.items():
        if key in reference and value.is_floating_point():
            weights[key] = value.to(reference[key].dtype)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the weights do not match the {header['model']} model "
                              f"its config describes: {error}") from None
    return model


def load_optimizer_state(optimizers: dict, header: dict, tensors: dict) -> None:
    """Restore each optimizer's state and param groups from a training checkpoint."""
    for name, optimizer in optimizers.items():
        groups = header["optim_groups"].get(name)
        if groups is None:
            raise CheckpointError(f"the checkpoint has no state for optimizer {name!r}")
        state: dict = {}
        prefix = f"optim.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix):].split(".", 1)
                state.setdefault(int(index), {})[field] = value
        optimizer.load_state_dict({"state": state, "param_groups": groups})


def load(path: str | Path, device: str | torch.device = "cpu"):
    """A ready model (eval mode) from a checkpoint file or run folder, with no code edits."""
    header, tensors = read_checkpoint(path)
    model = model_from_checkpoint(header, tensors, path)
    model.checkpoint_header = header
    return model.to(device).eval()


def export_checkpoint(source: str | Path, destination: str | Path, half: bool = True, drop=(),
                      **extra_meta) -> Path:
    """Write an inference-only copy (weights and config, no optimizer or RNG), fp16 by default;
    `drop` leaves out sub-networks sampling does not need, e.g. ("discriminator",) for a GAN."""
    header, tensors = read_checkpoint(source)
    model = model_from_checkpoint(header, tensors, source)
    drop_parts(model, drop)
    meta = {k: header[k] for k in ("step", "train_config") if k in header}
    meta.update(extra_meta, model_config=header["model_config"],
                dropped=sorted(set(header.get("dropped", [])) | set(drop)))
    save_checkpoint(Path(destination), model, meta, half=half)
    return Path(destination)
