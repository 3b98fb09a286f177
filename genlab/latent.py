"""Latent-space logic behind the explorer, free of any UI: controls -> latents -> image, sweeps
over one or two codes, spherical interpolation, animated GIFs and VAE encoding.

Everything is driven by a model's `LatentSpec`; nothing here knows a particular model.
Images leave this module as uint8 arrays (H, W, C) ready for any front end.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch

from .models.base import HasSamplingKnobs, LatentSpec, sample_prior

Z_SPAN_NORMAL = 3.0          # sliders over a N(0, 1) coordinate cover [-3, 3]


@dataclass(frozen=True)
class Axis:
    """One coordinate a slider or a sweep can move: z[i], the class y, cat[i] or cont[i]."""
    kind: str                # "z", "y", "cat" or "cont"
    index: int = 0

    @property
    def name(self) -> str:
        return "class" if self.kind == "y" else f"{self.kind}[{self.index}]"


def parse_axis(name: str) -> Axis:
    """The inverse of `Axis.name`: "z[3]" -> Axis("z", 3), "class" -> Axis("y")."""
    if name == "class":
        return Axis("y")
    kind, _, rest = name.partition("[")
    if kind not in ("z", "cat", "cont") or not rest.endswith("]") or not rest[:-1].isdigit():
        raise ValueError(f"unknown latent axis {name!r}; expected class, z[i], cat[i] or cont[i]")
    return Axis(kind, int(rest[:-1]))


def z_sliders(spec: LatentSpec) -> int:
    """How many z coordinates get a control: all of a vector z, none of a z of any other shape."""
    return spec.z_dim if spec.is_vector else 0


def z_range(spec: LatentSpec) -> tuple[float, float]:
    """Slider range of one z coordinate: +-3 sigma for a normal prior, [-1, 1] for a uniform one."""
    return (-Z_SPAN_NORMAL, Z_SPAN_NORMAL) if spec.z_prior == "normal" else (-1.0, 1.0)


def axis_range(spec: LatentSpec, axis: Axis) -> tuple[float, float]:
    """(low, high) of an axis; discrete axes run over 0 .. K-1."""
    if axis.kind == "z":
        return z_range(spec)
    if axis.kind == "y":
        return 0, spec.num_classes - 1
    if axis.kind == "cat":
        return 0, spec.categorical[axis.index] - 1
    return tuple(spec.continuous_range)


def sweep_axes(spec: LatentSpec, z_axes: int = 8) -> list[Axis]:
    """The axes a sweep offers: class, each categorical and continuous code, then the first z's (only of a
    vector z: one coordinate of an image-shaped z is one noise pixel)."""
    axes = [Axis("y")] if spec.num_classes else []
    axes += [Axis("cat", i) for i in range(len(spec.categorical))]
    axes += [Axis("cont", i) for i in range(spec.continuous)]
    axes += [Axis("z", i) for i in range(min(z_axes, z_sliders(spec)))]
    return axes


def axis_values(spec: LatentSpec, axis: Axis, steps: int) -> list[float]:
    """Values a sweep visits: every category of a discrete axis, `steps` even points otherwise."""
    low, high = axis_range(spec, axis)
    if axis.kind in ("y", "cat"):
        return list(range(int(low), int(high) + 1))
    return np.linspace(low, high, max(2, int(steps))).tolist()


def check_axis(spec: LatentSpec, axis: Axis) -> None:
    """Refuse an axis the model does not have, naming the ones it has."""
    valid = {"y": spec.num_classes > 0 and axis.index == 0, "z": axis.index < z_sliders(spec),
             "cat": axis.index < len(spec.categorical), "cont": axis.index < spec.continuous}
    if not valid.get(axis.kind, False):
        names = ", ".join(a.name for a in sweep_axes(spec, spec.z_dim))
        raise ValueError(f"this model has no latent axis {axis.name}; it has {names}")


# ---------------------------------------------------------------- controls -> latents
def prior_latents(spec: LatentSpec, seed: int) -> dict:
    """One latent (batch of 1) drawn from the prior with a fixed seed, on the CPU."""
    return sample_prior(spec, 1, torch.Generator().manual_seed(int(seed)), "cpu")


def compose_latents(spec: LatentSpec, seed: int, z_head=(), z_base=None, label=None,
                    cat=None, cont=None) -> dict:
    """A batch-of-1 latent: z from `z_base` (or the prior at `seed`) with its first dims set to
    `z_head`; class, categorical and continuous codes from the controls (or the prior)."""
    latents = prior_latents(spec, seed)
    if z_base is not None:
        latents["z"] = torch.as_tensor(z_base, dtype=torch.float32).reshape(1, *spec.z_shape).clone()
    head = torch.as_tensor(list(z_head)[:z_sliders(spec)], dtype=torch.float32)
    latents["z"].view(1, -1)[0, :len(head)] = head                 # no head for a z of another shape
    if spec.num_classes and label is not None:                    # out-of-range values are clamped
        latents["y"] = torch.tensor([min(max(int(label), 0), spec.num_classes - 1)])
    if spec.categorical and cat is not None:
        codes = [min(max(int(round(v)), 0), k - 1) for v, k in zip(list(cat), spec.categorical)]
        latents["cat"][0, :len(codes)] = torch.tensor(codes, dtype=latents["cat"].dtype)
    if spec.continuous and cont is not None:
        values = torch.as_tensor(list(cont)[:spec.continuous], dtype=torch.float32)
        latents["cont"][0, :len(values)] = values
    return latents


def set_axis(latents: dict, axis: Axis, value: float) -> None:
    """Set one coordinate of every latent in the batch, in place."""
    if axis.kind == "z":
        latents["z"][:, axis.index] = float(value)
    elif axis.kind == "y":
        latents["y"][:] = int(value)
    elif axis.kind == "cat":
        latents["cat"][:, axis.index] = int(value)
    else:
        latents["cont"][:, axis.index] = float(value)


def repeat_latents(latents: dict, n: int) -> dict:
    """n copies of a batch-of-1 latent."""
    return {key: value.repeat(n, *([1] * (value.dim() - 1))) for key, value in latents.items()}


def concat_latents(batches: list[dict]) -> dict:
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


# ---------------------------------------------------------------- latents -> images
def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, C) uint8; 1-channel images stay 1-channel."""
    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def generate_images(model, latents: dict, knobs: dict | None = None) -> np.ndarray:
    """The model's images for a batch of latents, (B, H, W, C) uint8; `knobs` are its sampling knobs
    (steps, sampler, guidance: see `knob_values`), for a model that has them."""
    device = model.device
    return to_uint8(model.generate(**{k: v.to(device) for k, v in latents.items()}, **(knobs or {})))


# ---------------------------------------------------------------- sampling knobs and trajectories
GUIDANCE_SWEEP = (0.0, 1.0, 2.0, 4.0, 8.0)
STEPS_SWEEP = (1, 2, 5, 10, 25, 50)


def knob_values(model, raw: dict) -> dict:
    """The keyword arguments of a HasSamplingKnobs model's `generate`/`sample` from raw control values:
    numbers clamped to each knob's range, a missing (None or "") one its default, an unknown choice a ValueError in one
    line. A model without knobs gets {} (raw values are ignored)."""
    if not isinstance(model, HasSamplingKnobs):
        return {}
    values = {}
    for name, knob in model.sampling_knobs().items():
        value = raw.get(name)
        if value is None or value == "":                          # not given: the model's default
            value = knob["default"]
        if "choices" in knob:
            if value not in knob["choices"]:
                raise ValueError(f"{name} must be one of {', '.join(map(str, knob['choices']))}")
            values[name] = value
            continue
        try:
            value = knob["type"](float(value)) if knob["type"] is int else knob["type"](value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{name} must be a number between {knob['low']} and {knob['high']}") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a number between {knob['low']} and {knob['high']}")
        values[name] = min(max(value, knob["low"]), knob["high"])
    return values


@torch.inference_mode()
def trajectory_frames(model, latents: dict, knobs: dict) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """A HasTrajectory model's path from a batch-of-1 latent's noise: per sampling step (noise level, x_t,
    predicted x0_hat) as uint8 (H, W, C), then (0.0, image, image). A stochastic sampler draws its noise
    from a fixed seed, as `generate` does, so the last image is `generate_images(model, latents, knobs)[0]`."""
    device = model.device
    y = latents["y"].to(device) if "y" in latents else None
    rng = torch.Generator(device=device).manual_seed(0)
    path = model.trajectory(1, rng, y, noise=latents["z"].to(device), **knobs)
    return [(float(level), to_uint8(x_t)[0], to_uint8(x0)[0]) for level, x_t, x0 in path]


def knob_sweep(model, latents: dict, knobs: dict, name: str, values) -> np.ndarray:
    """One row of images from the same latent (the same noise), one column per value of knob `name`."""
    images = [generate_images(model, latents, dict(knobs, **{name: value})) for value in values]
    return make_grid(np.concatenate(images), ncol=len(images))


def upscale(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Nearest-neighbour enlargement by the largest integer factor that keeps the side <= size."""
    factor = max(1, size // max(image.shape[0], image.shape[1]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def make_grid(images: np.ndarray, ncol: int, padding: int = 2, fill: int = 0) -> np.ndarray:
    """(B, H, W, C) uint8 -> one (rows*(H+p)+p, ncol*(W+p)+p, C) image, row-major."""
    b, h, w, c = images.shape
    rows = math.ceil(b / ncol)
    grid = np.full((rows * (h + padding) + padding, ncol * (w + padding) + padding, c), fill, np.uint8)
    for i in range(b):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def sweep_grid(model, base: list[dict], axis_x: Axis, steps: int, axis_y: Axis | None = None,
               knobs: dict | None = None) -> np.ndarray:
    """A grid of images moving one axis along columns; rows move a second axis (e.g. InfoGAN's
    c1 x c2) or, without one, are the batch-of-1 latents in `base` (several seeds)."""
    spec = model.latent_spec()
    check_axis(spec, axis_x)
    xs = axis_values(spec, axis_x, steps)
    rows = []
    if axis_y is None:
        for latents in base:
            row = repeat_latents(latents, len(xs))
            for col, value in enumerate(xs):
                set_axis_row(row, col, axis_x, value)
            rows.append(row)
    else:
        check_axis(spec, axis_y)
        if axis_y == axis_x:
            raise ValueError(f"sweep the two axes of a grid over different codes (both are {axis_x.name})")
        for value_y in axis_values(spec, axis_y, steps):
            row = repeat_latents(base[0], len(xs))
            set_axis(row, axis_y, value_y)
            for col, value in enumerate(xs):
                set_axis_row(row, col, axis_x, value)
            rows.append(row)
    return make_grid(generate_images(model, concat_latents(rows), knobs), ncol=len(xs))


def set_axis_row(latents: dict, row: int, axis: Axis, value: float) -> None:
    """Set one coordinate of one latent of a batch, in place."""
    one = {key: tensor[row:row + 1] for key, tensor in latents.items()}     # views into the batch
    set_axis(one, axis, value)


# ---------------------------------------------------------------- interpolation
def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents):
    sin((1-t) omega)/sin(omega) a + sin(t omega)/sin(omega) b, omega the angle between a and b.
    a, b: (B, *z_shape); a z of any shape is slerped as one flat vector per row."""
    if a.dim() > 2:
        return slerp(a.flatten(1), b.flatten(1), t).view(a.shape)
    a_unit, b_unit = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.arccos((a_unit * b_unit).sum(-1, keepdim=True).clamp(-1.0, 1.0))   # (..., 1)
    so = torch.sin(omega)
    if float(so.abs().min()) < 1e-6:                          # (anti)parallel: fall back to a line
        return (1 - t) * a + t * b
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def interpolation_latents(start: dict, end_z: torch.Tensor, frames: int) -> dict:
    """`frames` latents slerping z from start's z to end_z (1, z_dim); other codes stay as in start."""
    frames = max(2, int(frames))
    batch = repeat_latents(start, frames)
    ts = np.linspace(0.0, 1.0, frames)
    batch["z"] = torch.cat([slerp(start["z"], end_z, float(t)) for t in ts])          # (frames, *z_shape)
    return batch


def sample_grid_image(model, seed: int = 0, image_format: str = "PNG") -> bytes:
    """The model's fixed sample grid (`model.sample_grid`, as the training loop draws it) as PNG bytes,
    or lossless WebP (`image_format="WEBP"`: the same pixels in about 12% fewer bytes)."""
    from PIL import Image
    with torch.no_grad():
        images, nrow = model.eval().sample_grid(torch.Generator(device=model.device).manual_seed(seed))
    grid = make_grid(to_uint8(images), ncol=nrow)
    buffer = io.BytesIO()
    options = {"lossless": True, "quality": 100, "method": 6} if image_format == "WEBP" else {}
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def encode_gif(frames: np.ndarray, duration_ms: int = 80, boomerang: bool = True) -> bytes:
    """An endlessly looping animated GIF from (N, H, W, C) uint8 frames (played back and forth)."""
    from PIL import Image
    if boomerang and len(frames) > 2:
        frames = np.concatenate([frames, frames[-2:0:-1]])
    pictures = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=int(duration_ms), loop=0, disposal=2)
    return buffer.getvalue()


# ---------------------------------------------------------------- VAE encoding
def prepare_image(image: np.ndarray, channels: int, size: int, invert: bool | None = None) -> torch.Tensor:
    """Any uploaded image (H, W[, C]) uint8 -> (1, channels, size, size) in [-1, 1] like the data.
    invert=None inverts a 1-channel image whose border is bright (MNIST digits are white on black)."""
    from PIL import Image
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    picture = picture.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    array = array[..., None] if array.ndim == 2 else array                        # (H, W, C)
    if channels == 1:
        border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
        if invert or (invert is None and float(border.mean()) > 0.5):
            array = 1.0 - array
    return torch.from_numpy(array).permute(2, 0, 1)[None] * 2 - 1


@torch.inference_mode()
def encode_image(model, x: torch.Tensor) -> torch.Tensor:
    """The mean of q(z|x) for one image x (1, C, H, W) in [-1, 1], as a (z_dim,) vector."""
    mean, _ = model.encode(x.to(model.device))
    return mean[0].float().cpu()
