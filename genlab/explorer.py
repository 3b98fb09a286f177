"""The latent explorer: a Gradio app built from a model's `LatentSpec` alone (no model-specific UI).

    python -m genlab.explorer --port 7860        # the explorer alone (also an `sdk: gradio` Space)

Pick a checkpoint (checkpoints/, a local run - even one still training - or a Hugging Face Hub
repo id), then move sliders over z, the class, and the categorical/continuous codes; sweep one
or two codes into a grid; slerp between two seeds and export a GIF; encode an image with a VAE
and move its latent. `build_explorer()` returns the Blocks; the dashboard mounts it at /explorer.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import latent as L
from . import runs
from .checkpoint import MAX_PARAMETERS, CheckpointError, load, read_raw_header, resolve, serve_fast_on_cpu
from .models import MODELS, HasSamplingKnobs, HasTrajectory
from .runs import checkpoint_path, is_active, read_status
from .settings import Settings

MAX_Z_SLIDERS = 8            # sliders over the first z dims; a seed draws the rest
MAX_CATEGORICAL = 4          # InfoGAN's config allows up to 4 categorical codes
MAX_CONTINUOUS = 16          # ... and up to 16 continuous ones
KNOBS = ("steps", "sampler", "guidance")   # HasSamplingKnobs' knobs, in the order the controls carry them
CACHE_TRAJECTORIES = 16      # sampling trajectories kept (a scrubber reads them without sampling again)
RELOAD_EVERY_S = 10.0
HUB_PREFIX = "hf://"
IMAGE_SIDE = 256             # generated images are enlarged (nearest neighbour) to about this side
GRID_SIDE = 640
EXPLORER_THREADS = 1         # one image per event: one CPU thread is faster than threads waiting on each other
EXPLORER_CONCURRENCY = 4     # events served at once (a slow model load does not hold up other visitors)
CACHE_MODELS = 6             # models kept loaded, least recently used evicted first
CACHE_BYTES = 1024 ** 3      # ... and at most this many bytes of weights together
UPLOAD_BYTES = 20 * 1024 ** 2      # an uploaded image, when the public cap does not set one
UPLOAD_PIXELS = 4096 * 4096        # an uploaded image's width x height (decompression bombs)
GIF_KEEP = 16                # exported GIFs kept on disk (the newest); Gradio's own copies expire too
CACHE_EXPIRY_S = 900         # Gradio's cached uploads and outputs are deleted after this long
UNKNOWN_MODEL = "unknown model; choose one from the list"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
HUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


# ---------------------------------------------------------------- where models come from
class UnknownModel(ValueError):
    """A Model value that is not one of the listed entries (the message reveals nothing more)."""

    def __init__(self):
        super().__init__(UNKNOWN_MODEL)


def is_generator_file(path: Path) -> bool:
    """A checkpoint whose header names a registered model (not e.g. the judge); reads the header only."""
    try:
        header, _ = read_raw_header(path)
    except CheckpointError:
        return False
    return isinstance(header, dict) and header.get("model") in MODELS


@dataclass(frozen=True)
class Entry:
    """One model the explorer lists: a shipped checkpoint, a run folder or a Hub repo id."""
    key: str                   # what the dropdown holds: "checkpoints/<stem>", "runs/<name>" or "hf://<repo>"
    label: str
    path: Path | None = None   # the checkpoint file or run folder (None for a Hub repo)
    repo: str | None = None

    def stamp(self):
        """What changes when the entry's checkpoint is rewritten (its mtime); None for Hub repos."""
        if self.path is None:
            return None
        try:
            return resolve(self.path).stat().st_mtime_ns
        except (CheckpointError, OSError):
            return None


class Catalog:
    """The entries a visitor may choose; every handler resolves its Model value here."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.checkpoints_dir = Path(settings.checkpoints_dir)
        self.runs_root = Path(settings.runs_root)

    def hub_enabled(self) -> bool:
        return not self.settings.public

    def _checkpoint(self, stem: str) -> Entry | None:
        path = self.checkpoints_dir / f"{stem}.safetensors"
        if SAFE_NAME.fullmatch(stem) and path.is_file() and is_generator_file(path):
            return Entry(f"checkpoints/{stem}", f"{stem}  (checkpoints/)", path)
        return None

    def _run(self, name: str, info: runs.RunInfo | None = None) -> Entry | None:
        path = self.runs_root / name
        if not (SAFE_NAME.fullmatch(name) and path.is_dir() and not path.is_symlink()
                and (path / "config.json").is_file() and checkpoint_path(path).is_file()):
            return None
        info = info or runs.run_info(path)
        state = info.status.get("state", "?")
        model = info.config.get("train", {}).get("model", "?")
        training = ", training now" if is_active(info.status) else ""
        return Entry(f"runs/{name}", f"run {name}  ({model}, {state}, step {info.status.get('step', '?')}{training})",
                     path)

    def _hub(self, repo: str) -> Entry | None:
        if self.hub_enabled() and HUB_REPO.fullmatch(repo) and ".." not in repo and not Path(repo).exists():
            return Entry(HUB_PREFIX + repo, f"hub {repo}", repo=repo)
        return None

    def entries(self) -> list[Entry]:
        """Every listed entry: generator checkpoints in checkpoints_dir, then runs with a checkpoint."""
        found = [self._checkpoint(p.stem) for p in sorted(self.checkpoints_dir.glob("*.safetensors"))]
        found += [self._run(info.name, info) for info in runs.list_runs(self.runs_root)]
        return [entry for entry in found if entry is not None]

    def choices(self) -> list[tuple[str, str]]:
        return [(entry.label, entry.key) for entry in self.entries()]

    def resolve(self, value) -> Entry:
        """The listed entry a dropdown value names, or UnknownModel (one neutral message)."""
        if not isinstance(value, str) or len(value) > 300:
            raise UnknownModel()
        kind, _, name = value.partition("/")
        entry = None
        if value.startswith(HUB_PREFIX):
            entry = self._hub(value[len(HUB_PREFIX):])
        elif kind == "checkpoints":
            entry = self._checkpoint(name)
        elif kind == "runs":
            entry = self._run(name)
        if entry is None or entry.key != value:
            raise UnknownModel()
        return entry


@dataclass
class Loaded:
    """A model ready to sample, with what the UI shows about it."""
    source: str
    model: torch.nn.Module
    spec: L.LatentSpec
    header: dict
    stamp: object
    nbytes: int = 0


def load_entry(entry: Entry, max_parameters: int | None) -> Loaded:
    """Load a listed entry's model (the checkpoint's header is checked before any weight is read)."""
    if entry.repo is not None:
        from .hub import load_from_hub
        model = load_from_hub(entry.repo)
    else:
        model = load(entry.path, max_parameters=max_parameters)
    serve_fast_on_cpu(model)
    nbytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return Loaded(entry.key, model, model.latent_spec(), getattr(model, "checkpoint_header", {}),
                  entry.stamp(), nbytes)


class ModelCache:
    """Loaded models by entry key, least recently used first out, bounded by count and bytes.

    Loading happens outside the cache's lock (which guards only the dict), so a slow load never
    delays another visitor's render; a per-entry guard makes concurrent requests for one entry
    load it once."""

    def __init__(self, max_models: int = CACHE_MODELS, max_bytes: int = CACHE_BYTES,
                 max_parameters: int | None = MAX_PARAMETERS, loader=load_entry):
        self.max_models, self.max_bytes, self.max_parameters = max_models, max_bytes, max_parameters
        self._loader = loader
        self._models: OrderedDict[str, Loaded] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._models

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def nbytes(self) -> int:
        with self._lock:
            return sum(m.nbytes for m in self._models.values())

    def _cached(self, key: str) -> Loaded | None:
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
            return loaded

    def _store(self, loaded: Loaded) -> None:
        with self._lock:
            self._models[loaded.source] = loaded
            self._models.move_to_end(loaded.source)
            while len(self._models) > 1 and (len(self._models) > self.max_models or
                                             sum(m.nbytes for m in self._models.values()) > self.max_bytes):
                self._models.popitem(last=False)

    def _load(self, entry: Entry, is_fresh) -> Loaded:
        with self._lock:
            guard = self._loading.setdefault(entry.key, threading.Lock())
        with guard:                                   # only requests for this same entry wait here
            try:
                loaded = self._cached(entry.key)
                if loaded is not None and is_fresh(loaded):
                    return loaded
                loaded = self._loader(entry, self.max_parameters)
                self._store(loaded)
                return loaded
            finally:
                with self._lock:
                    if self._loading.get(entry.key) is guard:
                        del self._loading[entry.key]

    def get(self, entry: Entry) -> Loaded:
        """The model of an entry, loading it on first use."""
        return self._cached(entry.key) or self._load(entry, lambda loaded: True)

    def reload(self, entry: Entry) -> tuple[Loaded, bool]:
        """(model, changed): reread the checkpoint if it was rewritten since it was loaded."""
        def fresh(loaded):
            return loaded.stamp is None or loaded.stamp == entry.stamp()
        loaded = self._cached(entry.key)
        if loaded is not None and fresh(loaded):
            return loaded, False
        new = self._load(entry, fresh)
        return new, new is not loaded


# ---------------------------------------------------------------- pure helpers the handlers use
@dataclass
class Controls:
    """The values of the latent controls, in the order the UI passes them."""
    seed: int
    label: int | None
    z_head: list[float]
    cat: list[float]
    cont: list[float]
    knobs: dict = field(default_factory=dict)       # raw sampling knob values (checked by L.knob_values)

    @classmethod
    def from_values(cls, values) -> "Controls":
        values = list(values)
        seed, label = values[0], values[1]
        z_end = 2 + MAX_Z_SLIDERS
        cat_end = z_end + MAX_CATEGORICAL
        cont_end = cat_end + MAX_CONTINUOUS
        return cls(int(seed or 0), None if label is None else int(label), values[2:z_end],
                   values[z_end:cat_end], values[cat_end:cont_end], dict(zip(KNOBS, values[cont_end:])))

    def latents(self, spec: L.LatentSpec, z_base=None) -> dict:
        n_head = min(MAX_Z_SLIDERS, L.z_sliders(spec))
        return L.compose_latents(spec, self.seed, self.z_head[:n_head], z_base, self.label,
                                 self.cat, self.cont)


def describe(entry: Loaded) -> str:
    """A short Markdown description of a loaded model and its latent space."""
    h, spec = entry.header, entry.spec
    train = h.get("train_config") or {}
    shape = f"{spec.z_dim} dims" if spec.is_vector else f"{' x '.join(map(str, spec.z_shape))}, by seed only"
    parts = [f"z: {shape} ({spec.z_prior} prior)"]
    if spec.num_classes:
        parts.append(f"class: {spec.num_classes} values")
    if spec.categorical:
        parts.append(f"categorical codes: {spec.categorical}")
    if spec.continuous:
        parts.append(f"continuous codes: {spec.continuous} in {list(spec.continuous_range)}")
    where = entry.source
    data = f", data {train.get('dataset')}" if train.get("dataset") else ""
    return (f"**{h.get('model', '?')}** from `{where}`, step {h.get('step', '?')}{data}.  \n"
            f"Latent: {'; '.join(parts)}.")


def show(image: np.ndarray, side: int = IMAGE_SIDE) -> np.ndarray:
    """Enlarge for display; drop a single channel so the PNG is grayscale."""
    image = L.upscale(image, side)
    return image[..., 0] if image.shape[-1] == 1 else image


def knobs_of(entry: Loaded, controls: Controls) -> dict:
    """The checked sampling knobs of a HasSamplingKnobs model ({} for others); a bad one is one gr.Error."""
    try:
        return L.knob_values(entry.model, controls.knobs)
    except ValueError as error:
        import gradio as gr
        raise gr.Error(str(error)) from None


class TrajectoryCache:
    """Sampling trajectories (L.trajectory_frames) by model, latent and knobs, least recently used first out:
    a knob change samples once, scrubbing over its steps only reads."""

    def __init__(self, max_items: int = CACHE_TRAJECTORIES):
        self.max_items = max_items
        self._items: OrderedDict[tuple, list] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(entry: Loaded, latents: dict, knobs: dict) -> tuple:
        digest = hashlib.sha256()
        for name in sorted(latents):
            digest.update(name.encode() + latents[name].cpu().numpy().tobytes())
        return entry.source, entry.stamp, id(entry.model), digest.hexdigest(), tuple(sorted(knobs.items()))

    def frames(self, entry: Loaded, latents: dict, knobs: dict) -> tuple[list, bool]:
        """(frames, cached): the trajectory, sampled now unless it was kept."""
        key = self.key(entry, latents, knobs)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], True
        frames = L.trajectory_frames(entry.model, latents, knobs)
        with self._lock:
            self._items[key] = frames
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return frames, False


def render(entry: Loaded, controls: Controls, encoded=None,
           trajectories: TrajectoryCache | None = None) -> tuple[np.ndarray, str]:
    """What one slider event does: controls -> latent -> generator -> display image, timed. A HasTrajectory
    model's image is its trajectory's last one, kept in `trajectories` for the scrubber."""
    start = time.perf_counter()
    latents = controls.latents(entry.spec, encoded)
    knobs = knobs_of(entry, controls)
    if trajectories is not None and isinstance(entry.model, HasTrajectory):
        frames, _ = trajectories.frames(entry, latents, knobs)
        picture = frames[-1][1]
    else:
        picture = L.generate_images(entry.model, latents, knobs)[0]
    image = show(picture)
    ms = (time.perf_counter() - start) * 1000
    return image, f"server time {ms:.1f} ms (latents, generator, conversion)"


def trajectory_view(frames: list, position) -> tuple[np.ndarray, str]:
    """Step `position` (clamped) of a trajectory: x_t left of the predicted x0_hat, and a caption."""
    index = min(max(int(position), 0), len(frames) - 1)
    level, x_t, x0 = frames[index]
    pair = L.make_grid(np.stack([x_t, x0]), ncol=2)
    return show(pair, 2 * IMAGE_SIDE), (f"step {index} of {len(frames) - 1}, noise level {level:.3f}: "
                                        f"x_t (left), predicted x0 (right)")


# ---------------------------------------------------------------- the Gradio app
def model_dropdown_class():
    """gr.Dropdown (allow_custom_value=False in the browser) whose value is checked by the handlers
    against the live catalog, not against the choices known when the page was built: a run started
    later is selectable, anything else gets the one neutral UNKNOWN_MODEL message."""
    import gradio as gr

    class ModelDropdown(gr.Dropdown):
        is_template = True                      # rendered by the browser as a plain Dropdown

        def preprocess(self, payload):
            if payload is not None and not isinstance(payload, str):
                raise gr.Error(UNKNOWN_MODEL)
            return payload

    return ModelDropdown


def page_parameter(request, name: str) -> str | None:
    """A parameter of the explorer page's address (?model=...): the event request's own, else the one in its
    Referer (the page that sent it). Only a hint: handlers check the value against the catalog."""
    import urllib.parse
    if request is None:
        return None
    value = request.query_params.get(name)
    if value is None:
        referer = request.headers.get("referer") or ""
        value = (urllib.parse.parse_qs(urllib.parse.urlsplit(referer).query).get(name) or [None])[0]
    return value if isinstance(value, str) and len(value) <= 300 else None


def upload_limit(settings: Settings) -> int:
    """Bytes an uploaded image may have: the public cap, else UPLOAD_BYTES."""
    return settings.limits.max_upload_bytes or UPLOAD_BYTES


def launch_kwargs(settings: Settings) -> dict:
    """Keyword arguments for `launch()` / `gr.mount_gradio_app()` that make Gradio refuse larger uploads."""
    return {"max_file_size": upload_limit(settings)}


def read_upload(path, max_bytes: int) -> np.ndarray:
    """An uploaded image file as an RGB array, refused beyond max_bytes or UPLOAD_PIXELS; the
    upload's temporary copy is removed once read."""
    from PIL import Image
    import gradio.utils
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            raise ValueError(f"the image is larger than {max_bytes / 1024 ** 2:.0f} MB")
        with Image.open(path) as picture:
            if picture.width * picture.height > UPLOAD_PIXELS:
                raise ValueError(f"the image has more than {UPLOAD_PIXELS:,} pixels")
            return np.asarray(picture.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError("the file is not an image this explorer can read") from error
    finally:
        uploads = Path(gradio.utils.get_upload_folder()).resolve()
        if path.resolve().is_relative_to(uploads):
            path.unlink(missing_ok=True)


def prune_files(folder: Path, keep: int) -> None:
    """Delete all but the `keep` newest files of a folder."""
    files = sorted(folder.glob("*"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)


def build_explorer(settings: Settings | str | Path | None = None, runs_root: str | Path | None = None,
                   torch_threads: int | None = EXPLORER_THREADS, *, checkpoints_dir: str | Path | None = None,
                   cache_models: int = CACHE_MODELS, cache_bytes: int = CACHE_BYTES):
    """The explorer as a `gradio.Blocks` (mount it, or `.launch(**launch_kwargs(settings))` it).
    torch_threads sets torch's (process-wide) CPU threads; None leaves them as they are. The old
    form build_explorer(checkpoints_dir, runs_root) still works (other settings from the environment)."""
    import gradio as gr

    if not isinstance(settings, Settings):
        settings = Settings.from_env(checkpoints_dir=Path(checkpoints_dir or settings or "checkpoints"),
                                     runs_root=Path(runs_root) if runs_root is not None else None)
    if torch_threads:
        torch.set_num_threads(torch_threads)
    catalog = Catalog(settings)
    max_parameters = settings.limits.max_parameters if settings.public else MAX_PARAMETERS
    cache = ModelCache(cache_models, cache_bytes, max_parameters or MAX_PARAMETERS)
    trajectories = TrajectoryCache()
    gif_dir = Path(tempfile.mkdtemp(prefix="genlab-gifs-"))
    examples_dir = catalog.checkpoints_dir / "examples"
    example_images = sorted(str(p) for p in examples_dir.glob("*.png")) if examples_dir.is_dir() else []

    def entry_of(value) -> Entry:
        try:
            return catalog.resolve(value)
        except UnknownModel:
            raise gr.Error(UNKNOWN_MODEL) from None

    def load_error(entry: Entry, error: Exception) -> str:
        """A load failure of a listed entry, naming it by its key, never by its server path."""
        text = str(error)
        if entry.path is not None:
            text = text.replace(str(entry.path), entry.key).replace(str(entry.path.resolve()), entry.key)
        return text

    def entry_or_error(value) -> Loaded:
        if not value:
            raise gr.Error("Pick a model first.")
        entry = entry_of(value)
        try:
            return cache.get(entry)
        except Exception as error:                                   # shown in the UI, not a traceback
            raise gr.Error(f"Cannot load {entry.key}: {load_error(entry, error)}") from None

    def number(value, low, high, kind=int):
        """An event's number clamped to the range its widget offers (API calls can send anything)."""
        try:
            value = kind(value if value is not None else low)
        except (TypeError, ValueError, OverflowError):
            raise gr.Error("invalid number") from None
        if kind is float and not np.isfinite(value):
            raise gr.Error("invalid number")
        return min(max(value, low), high)

    def controls_of(values) -> Controls:
        try:
            given = Controls.from_values(values)
            given.z_head = [float(v) for v in given.z_head]
            given.cat = [float(v) for v in given.cat]
            given.cont = [float(v) for v in given.cont]
        except (TypeError, ValueError, OverflowError):
            raise gr.Error("invalid control values") from None
        if not -2 ** 63 <= given.seed < 2 ** 63 or not all(np.isfinite(given.z_head + given.cat + given.cont)):
            raise gr.Error("invalid control values")
        return given

    def z_head_values(entry: Loaded, seed, encoded):
        z = torch.as_tensor(encoded) if encoded is not None else L.prior_latents(entry.spec, seed)["z"][0]
        head = [round(float(v), 3) for v in z.flatten()[:min(MAX_Z_SLIDERS, L.z_sliders(entry.spec))]]
        return head + [0.0] * (MAX_Z_SLIDERS - len(head))

    def encoded_of(entry: Loaded, value):
        """A VAE's encoded latent from the session state (or an API call): z_dim finite floats, or None."""
        if value is None:
            return None
        try:
            z = torch.as_tensor(value, dtype=torch.float32).reshape(entry.spec.z_dim)
        except (TypeError, ValueError, RuntimeError):
            return None
        return z.tolist() if bool(torch.isfinite(z).all()) else None

    ModelDropdown = model_dropdown_class()
    with gr.Blocks(title="genlab latent explorer", delete_cache=(CACHE_EXPIRY_S, CACHE_EXPIRY_S)) as demo:
        gr.Markdown("## genlab latent explorer\nPick a model, then move the sliders: the image follows.")
        initial = catalog.choices()
        with gr.Row():
            with gr.Column(scale=3):
                source = ModelDropdown(choices=initial, value=initial[0][1] if initial else None, label="Model",
                                       info="checkpoints/ and local runs (a run still training too)",
                                       allow_custom_value=False, elem_id="explorer-model")
                with gr.Row(visible=catalog.hub_enabled()):
                    hub_repo = gr.Textbox(label="Hugging Face Hub repo id", placeholder="user/genlab-mnist-dcgan",
                                          scale=3)
                    hub_button = gr.Button("Load from Hub", scale=1, size="sm")
            with gr.Column(scale=1, min_width=180):
                refresh = gr.Button("Refresh list", size="sm")
                reload_button = gr.Button("Reload newest checkpoint", size="sm")
                auto_reload = gr.Checkbox(False, label=f"Reload every {RELOAD_EVERY_S:.0f} s")
        info = gr.Markdown()
        timer = gr.Timer(RELOAD_EVERY_S, active=False)
        encoded = gr.State(None)                    # a VAE's encoded latent (list of floats) or None

        with gr.Tab("Sliders"):
            with gr.Row():
                with gr.Column(scale=2):
                    with gr.Row():
                        seed = gr.Number(0, label="Seed (draws the z dims without a slider)", precision=0)
                        randomize = gr.Button("Randomize")
                    label = gr.Dropdown(choices=[0], value=0, label="Class", visible=False, allow_custom_value=True,
                                        elem_id="explorer-class")
                    cat_sliders = [gr.Slider(0, 9, 0, step=1, label=f"Categorical code {i}", visible=False,
                                             elem_id=f"explorer-cat{i}")
                                   for i in range(MAX_CATEGORICAL)]
                    cont_sliders = [gr.Slider(-1, 1, 0, step=0.05, label=f"Continuous code {i}", visible=False,
                                              elem_id=f"explorer-cont{i}")
                                    for i in range(MAX_CONTINUOUS)]
                    z_sliders = [gr.Slider(-3, 3, 0, step=0.05, label=f"z[{i}]", visible=False,
                                           elem_id=f"explorer-z{i}")
                                 for i in range(MAX_Z_SLIDERS)]
                    with gr.Group(visible=False) as knob_group:     # a model with sampling knobs only
                        steps_knob = gr.Slider(1, 100, 25, step=1, label="Sampling steps", elem_id="explorer-steps")
                        sampler_knob = gr.Dropdown(choices=[("default", "")], value="", label="Sampler",
                                                   allow_custom_value=True, elem_id="explorer-sampler")
                        guidance_knob = gr.Slider(0, 8, 1, step=0.1, label="Guidance w (0: the plain conditional "
                                                  "model)", elem_id="explorer-guidance")
                with gr.Column(scale=1):
                    image = gr.Image(label="Generated", format="png", interactive=False, height=IMAGE_SIDE,
                                     elem_id="explorer-image")
                    latency = gr.Markdown(elem_id="explorer-latency")
        with gr.Tab("Sweep"):
            gr.Markdown("Move one code along the columns; rows are other seeds, or a second code "
                        "(e.g. InfoGAN's cat[0] x cont[0]).")
            with gr.Row():
                axis_x = gr.Dropdown(choices=[], label="Columns: code to sweep")
                axis_y = gr.Dropdown(choices=["seeds"], value="seeds", label="Rows")
                sweep_steps = gr.Slider(3, 12, 8, step=1, label="Steps (continuous axes)")
                sweep_rows = gr.Slider(1, 10, 4, step=1, label="Rows of seeds")
            sweep_button = gr.Button("Make grid")
            sweep_image = gr.Image(label="Sweep", format="png", interactive=False)
        with gr.Tab("Interpolate"):
            gr.Markdown("Spherical interpolation of z between two seeds (the other codes as set on "
                        "the Sliders tab).")
            with gr.Row():
                seed_a = gr.Number(0, label="From seed", precision=0)
                seed_b = gr.Number(1, label="To seed", precision=0)
                frames = gr.Slider(4, 48, 16, step=1, label="Frames")
            frame = gr.Slider(0, 1, 0, step=0.01, label="Position (0 = from, 1 = to)")
            with gr.Row():
                frame_image = gr.Image(label="Frame", format="png", interactive=False, height=IMAGE_SIDE)
                gif_preview = gr.Image(label="GIF", type="filepath", interactive=False, height=IMAGE_SIDE)
            gif_button = gr.Button("Export GIF")
            gif_file = gr.File(label="GIF file")
        with gr.Tab("Denoising", visible=False) as denoise_tab:
            gr.Markdown("The sampler's path from the seed's noise to the image, with the Sliders tab's class "
                        "and knobs: the state x_t and the model's prediction of the final image at each step. "
                        "The sweeps keep the noise and change one knob per column.")
            scrub = gr.Slider(0, 100, 0, step=1, label="Sampling step (0 = pure noise)", elem_id="explorer-scrub")
            scrub_image = gr.Image(label="x_t | predicted x0", format="png", interactive=False,
                                   elem_id="explorer-trajectory")
            scrub_caption = gr.Markdown()
            with gr.Row():
                guidance_button = gr.Button("Guidance sweep (w = " + ", ".join(f"{w:g}" for w in L.GUIDANCE_SWEEP)
                                            + ")")
                steps_button = gr.Button("Steps sweep (" + ", ".join(map(str, L.STEPS_SWEEP)) + " steps)")
            knob_sweep_image = gr.Image(label="Sweep", format="png", interactive=False)
            knob_sweep_caption = gr.Markdown()
        with gr.Tab("Encode", visible=False) as encode_tab:
            gr.Markdown("Upload or pick an image; the encoder's mean latent is put on the sliders "
                        "(a bright background is inverted to match MNIST). Then move its latent on "
                        "the Sliders tab.")
            with gr.Row():
                upload = gr.Image(label="Image to encode", type="filepath", sources=["upload", "clipboard"],
                                  image_mode="RGB", height=IMAGE_SIDE)
                reconstruction = gr.Image(label="Decoded from its latent", format="png", interactive=False,
                                          height=IMAGE_SIDE)
            if example_images:      # a Dataset whose click goes through the queue: its image URL keeps /explorer
                examples = gr.Dataset(components=[upload], samples=[[path] for path in example_images],
                                      label="Test images", type="index", samples_per_page=len(example_images))
            encode_button = gr.Button("Encode")

        controls = [seed, label, *z_sliders, *cat_sliders, *cont_sliders, steps_knob, sampler_knob, guidance_knob]

        def knob_updates(entry: Loaded | None) -> list:
            """Knob controls and the Denoising tab for a model by its capabilities; hidden for others."""
            model = entry.model if entry is not None else None
            knobs = model.sampling_knobs() if isinstance(model, HasSamplingKnobs) else {}
            steps = knobs.get("steps", {"low": 1, "high": 100, "default": 25})
            sampler = knobs.get("sampler", {"choices": (), "default": None})
            guidance = knobs.get("guidance", {"low": 0, "high": 8, "default": 1.0})
            steps_value = min(max(steps["default"], steps["low"]), steps["high"])
            return [gr.update(visible=bool(knobs)),
                    gr.update(visible="steps" in knobs, minimum=steps["low"], maximum=steps["high"],
                              value=steps_value),
                    gr.update(visible="sampler" in knobs, choices=list(sampler["choices"]), value=sampler["default"]),
                    gr.update(visible="guidance" in knobs, minimum=guidance["low"], maximum=guidance["high"],
                              value=min(max(guidance["default"], guidance["low"]), guidance["high"])),
                    gr.update(visible=isinstance(model, HasTrajectory)),
                    gr.update(maximum=steps_value, value=steps_value), None, "",
                    gr.update(visible="guidance" in knobs), None, ""]

        def default_knobs(entry: Loaded) -> dict:
            model = entry.model
            return ({name: knob["default"] for name, knob in model.sampling_knobs().items()}
                    if isinstance(model, HasSamplingKnobs) else {})

        def trajectory_of(entry: Loaded, given: Controls, encoded_value=None) -> list | None:
            """The cached trajectory of the current controls (sampled once), None for a model without one."""
            if not isinstance(entry.model, HasTrajectory):
                return None
            latents = given.latents(entry.spec, encoded_of(entry, encoded_value))
            return trajectories.frames(entry, latents, knobs_of(entry, given))[0]

        # ---- handlers: each looks the model up in the cache (no reload per event)
        def on_source(source_value, seed_value):
            blank = ([gr.update(visible=False)] * (MAX_Z_SLIDERS + 1 + MAX_CATEGORICAL + MAX_CONTINUOUS))
            listed = entry_of(source_value) if source_value else None
            seed_value = number(seed_value, -2 ** 63, 2 ** 63 - 1)
            try:
                entry = cache.get(listed) if listed else None
            except Exception as error:
                return (f"**Cannot load** `{listed.key}`: {load_error(listed, error)}", *blank, gr.update(choices=[]),
                        gr.update(), gr.update(visible=False), None, None, "", *knob_updates(None), gr.update())
            if entry is None:
                return ("No model yet: train one or add checkpoints.", *blank, gr.update(choices=[]),
                        gr.update(), gr.update(visible=False), None, None, "", *knob_updates(None), gr.update())
            spec = entry.spec
            low, high = L.z_range(spec)
            head = z_head_values(entry, seed_value or 0, None)
            z_updates = [gr.update(visible=i < L.z_sliders(spec), minimum=low, maximum=high, value=head[i])
                         for i in range(MAX_Z_SLIDERS)]
            label_update = gr.update(visible=bool(spec.num_classes), value=0,
                                     choices=[(str(k), k) for k in range(max(spec.num_classes, 1))])
            cat_updates = [gr.update(visible=i < len(spec.categorical), value=0,
                                     maximum=(spec.categorical[i] - 1) if i < len(spec.categorical) else 9)
                           for i in range(MAX_CATEGORICAL)]
            c_low, c_high = spec.continuous_range
            cont_updates = [gr.update(visible=i < spec.continuous, minimum=c_low, maximum=c_high, value=0.0)
                            for i in range(MAX_CONTINUOUS)]
            axes = [a.name for a in L.sweep_axes(spec, MAX_Z_SLIDERS)]
            values = Controls(int(seed_value or 0), 0, head, [0] * MAX_CATEGORICAL, [0.0] * MAX_CONTINUOUS,
                              default_knobs(entry))
            picture, timing = render(entry, values, None, trajectories)
            run_active = listed.path is not None and listed.path.is_dir() and is_active(read_status(listed.path))
            knob_views = knob_updates(entry)
            frames = trajectory_of(entry, values)
            if frames is not None:
                knob_views[6:8] = trajectory_view(frames, len(frames) - 1)
            return (describe(entry), *z_updates, label_update, *cat_updates, *cont_updates,
                    gr.update(choices=axes, value=axes[0] if axes else None),
                    gr.update(choices=["seeds"] + axes, value="seeds"),
                    gr.update(visible=hasattr(entry.model, "encode")), None, picture, timing,
                    *knob_views, gr.update(value=run_active))

        source_outputs = [info, *z_sliders, label, *cat_sliders, *cont_sliders, axis_x, axis_y, encode_tab,
                          encoded, image, latency, knob_group, steps_knob, sampler_knob, guidance_knob, denoise_tab,
                          scrub, scrub_image, scrub_caption, guidance_button, knob_sweep_image, knob_sweep_caption,
                          auto_reload]
        source.change(on_source, [source, seed], source_outputs, api_name="select_model")

        def on_page_load(source_value, seed_value, request: gr.Request):
            """A new visitor: the list as it is now (runs started since the server did), then the model
            (?model=runs/NAME in the address picks a listed one, e.g. from the dashboard's Explore)."""
            listed = catalog.choices()
            keys = [key for _, key in listed]
            asked = page_parameter(request, "model")
            value = asked if asked in keys else source_value if source_value in keys else \
                (keys[0] if keys else None)
            return (gr.update(choices=listed, value=value), *on_source(value, seed_value))

        on_page_load.__annotations__["request"] = gr.Request    # resolved here: the module's annotations are strings

        demo.load(on_page_load, [source, seed], [source, *source_outputs], api_visibility="private")

        def generate(source_value, encoded_value, *values):
            """Slider event -> image: compose the latent and run the generator once."""
            entry = entry_or_error(source_value)
            return render(entry, controls_of(values), encoded_of(entry, encoded_value), trajectories)

        def on_trajectory(source_value, encoded_value, position, *values):
            """The scrubber: one step of the current controls' trajectory (sampled once per knob change)."""
            entry = entry_or_error(source_value)
            start = time.perf_counter()
            frames = trajectory_of(entry, controls_of(values), encoded_value)
            if frames is None:
                raise gr.Error("This model has no sampling trajectory; pick a diffusion or flow model.")
            picture, caption = trajectory_view(frames, number(position, 0, 10 ** 6))
            return picture, f"{caption}; server time {(time.perf_counter() - start) * 1000:.1f} ms"

        def follow_trajectory(source_value, encoded_value, position, *values):
            """After the image changed: the scrubber's range and view follow (the trajectory is cached)."""
            entry = entry_or_error(source_value)
            if not isinstance(entry.model, HasTrajectory):
                return gr.update(), gr.update(), gr.update()
            frames = trajectory_of(entry, controls_of(values), encoded_value)
            last = len(frames) - 1
            position = min(number(position, 0, 10 ** 6), last)
            return (gr.update(maximum=last, value=position),
                    *on_trajectory(source_value, encoded_value, position, *values))

        scrub.input(on_trajectory, [source, encoded, scrub, *controls], [scrub_image, scrub_caption],
                    api_name="trajectory", trigger_mode="always_last", show_progress="hidden")
        follow = dict(fn=follow_trajectory, inputs=[source, encoded, scrub, *controls],
                      outputs=[scrub, scrub_image, scrub_caption], api_visibility="private", show_progress="hidden")

        gr.on([c.input for c in (label, *z_sliders, *cat_sliders, *cont_sliders, steps_knob, sampler_knob,
                                 guidance_knob)], generate,
              [source, encoded, *controls], [image, latency], api_name="generate", trigger_mode="always_last",
              show_progress="hidden").then(**follow)

        def knob_sweep(source_value, name: str, values_swept, *values):
            entry = entry_or_error(source_value)
            given = controls_of(values)
            knobs = knobs_of(entry, given)
            if name not in knobs:
                raise gr.Error(f"This model has no {name} knob.")
            start = time.perf_counter()
            grid = L.knob_sweep(entry.model, given.latents(entry.spec), knobs, name, values_swept)
            caption = (f"columns: {name} = {', '.join(f'{v:g}' for v in values_swept)}; "
                       f"server time {(time.perf_counter() - start) * 1000:.0f} ms")
            return show(grid, GRID_SIDE), caption

        def on_guidance_sweep(source_value, *values):
            """The same noise and class at guidance w = 0, 1, 2, 4, 8."""
            return knob_sweep(source_value, "guidance", L.GUIDANCE_SWEEP, *values)

        def on_steps_sweep(source_value, *values):
            """The same noise at 1, 2, 5, 10, 25 and 50 sampling steps."""
            return knob_sweep(source_value, "steps", L.STEPS_SWEEP, *values)

        guidance_button.click(on_guidance_sweep, [source, *controls], [knob_sweep_image, knob_sweep_caption],
                              api_name="guidance_sweep")
        steps_button.click(on_steps_sweep, [source, *controls], [knob_sweep_image, knob_sweep_caption],
                           api_name="steps_sweep")

        def on_seed(source_value, *values):
            """A new seed: its first z dims go onto the sliders, and the image follows."""
            entry = entry_or_error(source_value)
            given = controls_of(values)
            given.z_head = z_head_values(entry, given.seed, None)
            return (None, *given.z_head, *render(entry, given, None, trajectories))

        seed_outputs = [encoded, *z_sliders, image, latency]
        seed.submit(on_seed, [source, *controls], seed_outputs, api_name="set_seed", show_progress="hidden") \
            .then(**follow)

        def on_randomize(source_value, *values):
            new_seed = int(np.random.default_rng().integers(0, 2**31 - 1))
            return (new_seed, *on_seed(source_value, new_seed, *values[1:]))

        randomize.click(on_randomize, [source, *controls], [seed, *seed_outputs], api_name="randomize",
                        show_progress="hidden").then(**follow)

        def on_reload(source_value, encoded_value, *values):
            """Reread a run's newest checkpoint if it changed; redraw the image."""
            if not source_value:
                return gr.update(), gr.update(), gr.update()
            listed = entry_of(source_value)
            try:
                entry, changed = cache.reload(listed)
            except Exception as error:
                return f"**Cannot reload** `{listed.key}`: {load_error(listed, error)}", gr.update(), gr.update()
            picture, timing = render(entry, controls_of(values), encoded_of(entry, encoded_value), trajectories)
            note = " (reloaded)" if changed else " (unchanged)"
            return describe(entry) + note, picture, timing

        def relabel():
            """The list with fresh labels (a training run's step and state), the choice kept."""
            return gr.update(choices=catalog.choices())

        reload_button.click(on_reload, [source, encoded, *controls], [info, image, latency], api_name="reload") \
            .then(relabel, None, [source], api_visibility="private", show_progress="hidden")
        timer.tick(on_reload, [source, encoded, *controls], [info, image, latency], api_visibility="private",
                   show_progress="hidden").then(relabel, None, [source], api_visibility="private",
                                                show_progress="hidden")
        auto_reload.change(lambda on: gr.Timer(active=bool(on)), [auto_reload], [timer], api_visibility="private")
        refresh.click(lambda: gr.update(choices=catalog.choices()), None, [source], api_name="refresh")

        def on_hub(repo_id):
            repo_id = (repo_id or "").strip() if isinstance(repo_id, str) else ""
            if not catalog.hub_enabled():
                raise gr.Error("This server does not load models from the Hub.")
            if not repo_id:
                raise gr.Error("Type a Hub repo id such as user/genlab-mnist-dcgan.")
            try:
                entry = catalog.resolve(HUB_PREFIX + repo_id)
            except UnknownModel:
                raise gr.Error("A Hub repo id looks like user/genlab-mnist-dcgan.") from None
            return gr.update(choices=catalog.choices() + [(entry.label, entry.key)], value=entry.key)

        hub_button.click(on_hub, [hub_repo], [source], api_name="hub")

        def on_sweep(source_value, x_name, y_name, steps, rows, encoded_value, *values):
            """A grid moving one axis along columns; rows are seeds or a second axis."""
            entry = entry_or_error(source_value)
            given = controls_of(values)
            steps, rows = number(steps, 3, 12), number(rows, 1, 10)
            try:
                axis_1 = L.parse_axis(x_name if isinstance(x_name, str) else "")
                axis_2 = None if y_name in (None, "", "seeds") else L.parse_axis(str(y_name))
                base = [given.latents(entry.spec, encoded_of(entry, encoded_value))]
                for r in range(1, rows if axis_2 is None else 1):
                    other = Controls(given.seed + r, given.label, [], given.cat, given.cont)
                    base.append(other.latents(entry.spec))
                grid = L.sweep_grid(entry.model, base, axis_1, steps, axis_2, knobs_of(entry, given))
            except ValueError as error:
                raise gr.Error(str(error)) from None
            return show(grid, GRID_SIDE)

        sweep_button.click(on_sweep, [source, axis_x, axis_y, sweep_steps, sweep_rows, encoded, *controls],
                           [sweep_image], api_name="sweep")

        def interpolation(entry: Loaded, a, b, count, given: Controls):
            start = Controls(a, given.label, [], given.cat, given.cont).latents(entry.spec)
            end_z = L.prior_latents(entry.spec, b)["z"]
            return L.interpolation_latents(start, end_z, count)

        def seeds_of(a, b):
            return number(a, -2 ** 63, 2 ** 63 - 1), number(b, -2 ** 63, 2 ** 63 - 1)

        def on_frame(source_value, a, b, count, position, *values):
            """One frame of the slerp path at `position` in [0, 1]."""
            entry = entry_or_error(source_value)
            given = controls_of(values)
            a, b = seeds_of(a, b)
            start = Controls(a, given.label, [], given.cat, given.cont).latents(entry.spec)
            end_z = L.prior_latents(entry.spec, b)["z"]
            start["z"] = L.slerp(start["z"], end_z, number(position, 0.0, 1.0, float))
            return show(L.generate_images(entry.model, start, knobs_of(entry, given))[0])

        frame_inputs = [source, seed_a, seed_b, frames, frame, *controls]
        gr.on([frame.input, seed_a.submit, seed_b.submit], on_frame, frame_inputs, [frame_image],
              api_name="frame", trigger_mode="always_last", show_progress="hidden")

        def on_gif(source_value, a, b, count, *values):
            """All frames of the slerp path as an animated GIF (forth and back)."""
            entry = entry_or_error(source_value)
            (a, b), count, given = seeds_of(a, b), number(count, 4, 48), controls_of(values)
            batch = interpolation(entry, a, b, count, given)
            images = L.generate_images(entry.model, batch, knobs_of(entry, given))
            pictures = np.stack([L.upscale(f, 112) for f in images])
            prune_files(gif_dir, GIF_KEEP - 1)
            path = gif_dir / f"slerp-{a}-{b}-{count}-{time.time_ns()}.gif"
            path.write_bytes(L.encode_gif(pictures))
            return str(path), str(path)

        gif_button.click(on_gif, [source, seed_a, seed_b, frames, *controls], [gif_preview, gif_file],
                         api_name="gif")

        def on_encode(source_value, picture):
            """Encode an image with the model's encoder; its mean latent goes onto the sliders."""
            entry = entry_or_error(source_value)
            if not hasattr(entry.model, "encode"):
                raise gr.Error(f"{entry.header.get('model', 'this model')} has no encoder; pick a VAE.")
            if not isinstance(picture, str) or not picture:
                raise gr.Error("Upload or pick an image first.")
            try:
                picture = read_upload(picture, upload_limit(settings))
            except ValueError as error:
                raise gr.Error(f"Cannot use this image: {error}.") from None
            config = entry.model.config
            x = L.prepare_image(picture, config.channels, config.image_size)
            z = L.encode_image(entry.model, x)
            values = z.tolist()
            head = z_head_values(entry, 0, values)
            decoded = show(L.generate_images(entry.model, {"z": z[None]})[0])
            return (values, *head, decoded, decoded, "encoded: the sliders hold its first z dims")

        if example_images:
            def on_example(index):
                """The test image a click on the examples picked (an index into the listed ones only)."""
                if not isinstance(index, int) or not 0 <= index < len(example_images):
                    raise gr.Error("unknown example")
                return example_images[index]

            examples.click(on_example, [examples], [upload], api_visibility="private", show_progress="hidden")

        encode_button.click(on_encode, [source, upload], [encoded, *z_sliders, reconstruction, image, latency],
                            api_name="encode")
    demo.queue(default_concurrency_limit=EXPLORER_CONCURRENCY)
    return demo


def main(argv=None) -> None:
    """Launch the explorer alone: python -m genlab.explorer [--port 7860]."""
    parser = argparse.ArgumentParser(prog="python -m genlab.explorer", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default=None, help="Folder of checkpoint files (default: GENLAB_CHECKPOINTS).")
    parser.add_argument("--runs-root", default=None, help="Folder of local runs (default: GENLAB_RUNS_ROOT).")
    parser.add_argument("--host", default="127.0.0.1", help="Use 0.0.0.0 to serve other machines.")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    settings = Settings.from_env(checkpoints_dir=args.checkpoints and Path(args.checkpoints),
                                 runs_root=args.runs_root and Path(args.runs_root))
    build_explorer(settings).launch(server_name=args.host, server_port=args.port, **launch_kwargs(settings))


if __name__ == "__main__":
    main()
