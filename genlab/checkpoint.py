"""Checkpoints: one safetensors file holding plain tensors only, with a JSON header that says
how to rebuild the model (name + config) and, for training checkpoints, how to resume
(step, optimizer param groups). Nothing is unpickled.

The header also carries `checksum`: sha256 over every tensor's name, dtype, shape and bytes (sorted
by name), checked on every read. Before any tensor is read or any weight allocated, the header and
the declared tensor shapes are checked against the model the header describes, built on the meta
device, whose parameter count must stay within `max_parameters`.

    model.<key>                    model weights (state_dict)
    scale.<key>                    per-row scale of a weight stored as int8 (optional, see `quantize_int8`)
    optim.<name>.<i>.<key>         optimizer state of parameter i
    rng.torch, rng.cuda, rng.loop  random number generator states
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path

import torch

from .config import ConfigError, to_dict
from .models import build_model
from .runs import atomic_write_bytes, checkpoint_path

FORMAT = 1
MAX_PARAMETERS = 200_000_000         # default cap on the model a header may describe
MAX_HEADER_BYTES = 16 * 1024 ** 2    # the JSON header of a safetensors file, read before anything else


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


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row (index of dim 0): w ~ q * scale, scale = max|w_row| / 127."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)               # (R, N)
    scale = rows.abs().amax(1).clamp_min(1e-12) / 127                         # (R,)
    q = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8)   # (R, N)
    return q.reshape(weight.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight q * scale (scale per row, broadcast over the other dims)."""
    return q.float() * scale.float().reshape(-1, *[1] * (q.dim() - 1))


def save_checkpoint(path: Path, model, meta: dict, optimizers: dict | None = None,
                    rng: dict | None = None, half: bool = False, int8_min_numel: int | None = None) -> None:
    """Write model weights (and optionally optimizer and RNG state) atomically to one file; with
    `int8_min_numel`, floating weights of 2+ dims and at least that many elements are stored as int8."""
    from safetensors.torch import save
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if (int8_min_numel is not None and value.is_floating_point() and value.dim() >= 2
                and value.numel() >= int8_min_numel):
            value, tensors[f"scale.{key}"] = quantize_int8(value)
        elif half and value.is_floating_point():
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
                  model_config=meta.get("model_config") or to_dict(model.config), optim_groups=groups,
                  checksum=tensor_checksum(tensors))
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


def tensor_checksum(tensors: dict) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{str(tensor.dtype)}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_raw_header(path: Path) -> tuple[dict, dict[str, list[int]]]:
    """(genlab header, declared shape per tensor name) of a safetensors file, reading only its
    8-byte length and JSON header (at most MAX_HEADER_BYTES): no tensor data is read."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise ValueError("no safetensors header")
            table = json.loads(f.read(length))
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): "
                              f"{error}") from None
    if not isinstance(table, dict):
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): "
                              f"its header is not a JSON object")
    metadata = table.pop("__metadata__", None) or {}
    shapes, data_bytes = {}, size - 8 - length
    for name, entry in table.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise CheckpointError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): "
                                  f"tensor {name!r} is declared out of the file")
        shapes[name] = shape
    if not isinstance(metadata, dict) or "genlab" not in metadata:
        raise CheckpointError(f"{path} has no genlab header: it was not written by genlab")
    try:
        header = json.loads(metadata["genlab"])
    except (TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the genlab header is not valid JSON ({error})") from None
    return header, shapes


def _finite(value) -> bool:
    """True when every number in a JSON value is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def check_header(header, path="checkpoint") -> None:
    """Refuse a genlab header of the wrong shape: not an object, wrong field types, NaN, a negative step."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the genlab header is not a JSON object")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {header.get('format')!r} is not supported "
                              f"(this genlab reads format {FORMAT})")
    types = {"model": str, "model_config": dict, "train_config": dict, "optim_groups": dict, "dropped": list,
             "checksum": str}
    for name, kind in types.items():
        if name in header and not isinstance(header[name], kind):
            raise CheckpointError(f"{path}: header field {name!r} must be a {kind.__name__}")
    for name in ("model", "model_config"):
        if name not in header:
            raise CheckpointError(f"{path}: the genlab header has no {name!r}")
    step = header.get("step", 0)
    if type(step) is not int or step < 0:
        raise CheckpointError(f"{path}: header step must be an integer >= 0, not {step!r}")
    if not all(isinstance(part, str) for part in header.get("dropped", [])):
        raise CheckpointError(f"{path}: header field 'dropped' must list sub-network names")
    if not _finite(header):
        raise CheckpointError(f"{path}: the genlab header holds a number that is not finite (NaN or infinity)")


class _NoFillOnMeta(torch.overrides.TorchFunctionMode):
    """Skips in-place value fills (weight init) of meta tensors, which have no values anyway; without it
    the first init on the meta device imports torch's compiler stack (seconds). Thread-local."""
    FILLS = {"normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "kaiming_uniform_",
             "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "trunc_normal_", "orthogonal_", "eye_",
             "dirac_", "sparse_", "copy_", "mul_", "add_", "sub_", "div_", "clamp_", "bernoulli_"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")           # nn.init passes tensor= by keyword
        if getattr(func, "__name__", "") in self.FILLS and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def build_checked(header: dict, path="checkpoint", device: str | torch.device = "cpu",
                  max_parameters: int | None = MAX_PARAMETERS):
    """The model a checked header describes, with its dropped parts left out; built on the meta
    device first so that a header asking for too many parameters is refused before any allocation."""
    try:
        with torch.device("meta"), _NoFillOnMeta():
            probe = build_model(header["model"], header["model_config"])
    except (ConfigError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild the model from its header: {error}") from None
    drop_parts(probe, header.get("dropped", []))
    count = sum(p.numel() for p in probe.parameters())
    if max_parameters is not None and count > max_parameters:
        raise CheckpointError(f"{path}: the {header['model']} model its header describes has {count:,} "
                              f"parameters; at most {max_parameters:,} are allowed here")
    if str(device) == "meta":
        return probe
    model = build_model(header["model"], header["model_config"])
    drop_parts(model, header.get("dropped", []))
    return model


def check_shapes(model, shapes: dict[str, list[int]], path="checkpoint") -> None:
    """The declared model.* tensors must be exactly the (meta) model's state_dict, shape for shape."""
    declared = {k[len("model."):]: v for k, v in shapes.items() if k.startswith("model.")}
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    if declared != expected:
        wrong = sorted(k for k in set(declared) | set(expected) if declared.get(k) != expected.get(k))
        raise CheckpointError(f"{path}: the weights do not match the {model.name} model its config describes "
                              f"({len(wrong)} tensor(s) missing, unexpected or of another shape, e.g. "
                              f"{', '.join(wrong[:3])})")


def read_header(path: str | Path, max_parameters: int | None = MAX_PARAMETERS) -> dict:
    """The checked header of a checkpoint, reading no tensor data and allocating no weights: field
    types, the model config, its parameter count (<= max_parameters) and the declared shapes."""
    path = resolve(path)
    header, shapes = read_raw_header(path)
    check_header(header, path)
    check_shapes(build_checked(header, path, "meta", max_parameters), shapes, path)
    return header


def read_checkpoint(path: str | Path, max_parameters: int | None = MAX_PARAMETERS) -> tuple[dict, dict]:
    """(header, tensors) of a checkpoint file; refuses anything that is not a sane genlab checkpoint
    (see `read_header`) and tensors whose checksum does not match the header's."""
    from safetensors import SafetensorError, safe_open
    path = resolve(path)
    header = read_header(path, max_parameters)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): "
                              f"{error}") from None
    if "checksum" in header and tensor_checksum(tensors) != header["checksum"]:
        raise CheckpointError(f"{path}: the tensor bytes do not match the checksum in the header "
                              f"(the file is corrupt)")
    return header, tensors


def model_from_checkpoint(header: dict, tensors: dict, path="checkpoint",
                          max_parameters: int | None = MAX_PARAMETERS):
    """Rebuild the model a header names and load its weights strictly."""
    check_header(header, path)
    model = build_checked(header, path, "cpu", max_parameters)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    scales = {k[len("scale."):]: v for k, v in tensors.items() if k.startswith("scale.")}
    reference = model.state_dict()
    for key, value in weights.items():
        if key in reference and value.is_floating_point():
            weights[key] = value.to(reference[key].dtype)
        elif key in reference and reference[key].is_floating_point() and value.dtype == torch.int8:
            scale = scales.pop(key, None)
            if scale is None or value.dim() == 0 or list(scale.shape) != [value.shape[0]] \
                    or not scale.is_floating_point() or not torch.isfinite(scale).all():
                raise CheckpointError(f"{path}: the int8 weight {key!r} has no valid scale (expected a finite "
                                      f"float tensor scale.{key} with one value per row)")
            weights[key] = dequantize_int8(value, scale).to(reference[key].dtype)
    if scales:
        raise CheckpointError(f"{path}: scale tensor(s) for no int8 weight: {', '.join(sorted(scales)[:3])}")
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
        match_parameter_layout(optimizer)


def match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each state tensor (Adam's moments) its parameter's strides: a file stores them contiguous, a
    channels_last parameter is not, and CUDA's fused/foreach Adam refuses the mix on the next step."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            fields = optimizer.state.get(param, {})
            for field, value in fields.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    fields[field] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def load(path: str | Path, device: str | torch.device = "cpu", max_parameters: int | None = MAX_PARAMETERS):
    """A ready model (eval mode) from a checkpoint file or run folder, with no code edits."""
    header, tensors = read_checkpoint(path, max_parameters)
    model = model_from_checkpoint(header, tensors, path, max_parameters)
    model.checkpoint_header = header
    return model.to(device).eval()


def serve_fast_on_cpu(model):
    """On the CPU, hold the weights channels-last: oneDNN's NHWC convolutions made sampling 11-25% faster
    and the VAE's likelihood 1.34x faster (docs/performance.md). Returns the model."""
    if model.device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


def export_checkpoint(source: str | Path, destination: str | Path, half: bool = True, drop=None,
                      int8_min_numel: int | None = None, **extra_meta) -> Path:
    """Write an inference-only copy (weights and config, no optimizer or RNG), fp16 by default;
    `drop` leaves out sub-networks sampling does not need (default: the model's `inference_drop()`, e.g. a
    GAN's discriminator, and its raw generator when a moving average of it samples); () keeps them all.
    `int8_min_numel` stores weights of at least that many elements as int8 with per-row scales
    (`quantize_int8`: about half of float16's bytes; `load` gives float weights back)."""
    header, tensors = read_checkpoint(source)
    model = model_from_checkpoint(header, tensors, source)
    drop = model.inference_drop() if drop is None else tuple(drop)
    drop_parts(model, drop)
    meta = {k: header[k] for k in ("step", "train_config") if k in header}
    meta.update(extra_meta, model_config=header["model_config"],
                dropped=sorted(set(header.get("dropped", [])) | set(drop)))
    save_checkpoint(Path(destination), model, meta, half=half, int8_min_numel=int8_min_numel)
    return Path(destination)
