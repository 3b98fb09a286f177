"""The latent explorer: a Gradio app built from a model's `LatentSpec` alone (no model-specific UI).

    python -m genlab.explorer --port 7860        # the explorer alone (also an `sdk: gradio` Space)

Pick a checkpoint (checkpoints/, a local run - even one still training - or a Hugging Face Hub
repo id), then move sliders over z, the class, and the categorical/continuous codes; sweep one
or two codes into a grid; slerp between two seeds and export a GIF; encode an image with a VAE
and move its latent. `build_explorer()` returns the Blocks; the dashboard mounts it at /explorer.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import latent as L
from .checkpoint import CheckpointError, load, resolve
from .runs import checkpoint_path, is_active, list_runs, read_status

MAX_Z_SLIDERS = 8            # sliders over the first z dims; a seed draws the rest
MAX_CATEGORICAL = 4          # InfoGAN's config allows up to 4 categorical codes
MAX_CONTINUOUS = 16          # ... and up to 16 continuous ones
RELOAD_EVERY_S = 10.0
HUB_PREFIX = "hf://"
IMAGE_SIDE = 256             # generated images are enlarged (nearest neighbour) to about this side
GRID_SIDE = 640
EXPLORER_THREADS = 1         # one image per event: one CPU thread is faster than threads waiting on each other


# ---------------------------------------------------------------- where models come from
def list_sources(checkpoints_dir: str | Path, runs_root: str | Path) -> list[tuple[str, str]]:
    """(label, source) for every checkpoint file in checkpoints_dir and every run with a checkpoint."""
    sources = []
    for path in sorted(Path(checkpoints_dir).glob("*.safetensors")):
        sources.append((f"{path.stem}  (checkpoints/)", str(path)))
    for run in list_runs(runs_root):
        if checkpoint_path(run.path).exists():
            state = run.status.get("state", "?")
            model = run.config.get("train", {}).get("model", "?")
            training = ", training now" if is_active(run.status) else ""
            sources.append((f"run {run.name}  ({model}, {state}, step {run.status.get('step', '?')}{training})",
                            str(run.path)))
    return sources


def source_stamp(source: str):
    """What changes when a source's checkpoint is rewritten (its mtime); None for Hub repos."""
    if source.startswith(HUB_PREFIX):
        return None
    try:
        return resolve(source).stat().st_mtime_ns
    except (CheckpointError, OSError):
        return None


@dataclass
class Loaded:
    """A model ready to sample, with what the UI shows about it."""
    source: str
    model: torch.nn.Module
    spec: L.LatentSpec
    header: dict
    stamp: object


class ModelCache:
    """Loaded models by source: loaded once, reloaded only when asked and the file changed."""

    def __init__(self):
        self._models: dict[str, Loaded] = {}
        self._lock = threading.Lock()

    def _load(self, source: str) -> Loaded:
        if source.startswith(HUB_PREFIX):
            from .hub import load_from_hub
            model = load_from_hub(source[len(HUB_PREFIX):])
        else:
            model = load(source)
        return Loaded(source, model, model.latent_spec(), getattr(model, "checkpoint_header", {}),
                      source_stamp(source))

    def get(self, source: str) -> Loaded:
        """The model of a source, loading it on first use."""
        with self._lock:
            if source not in self._models:
                self._models[source] = self._load(source)
            return self._models[source]

    def reload(self, source: str) -> tuple[Loaded, bool]:
        """(model, changed): reread the checkpoint if it was rewritten since it was loaded."""
        with self._lock:
            entry = self._models.get(source)
            if entry is not None and (entry.stamp is None or entry.stamp == source_stamp(source)):
                return entry, False
            self._models[source] = self._load(source)
            return self._models[source], True


# ---------------------------------------------------------------- pure helpers the handlers use
@dataclass
class Controls:
    """The values of the latent controls, in the order the UI passes them."""
    seed: int
    label: int | None
    z_head: list[float]
    cat: list[float]
    cont: list[float]

    @classmethod
    def from_values(cls, values) -> "Controls":
        values = list(values)
        seed, label = values[0], values[1]
        z_end = 2 + MAX_Z_SLIDERS
        cat_end = z_end + MAX_CATEGORICAL
        return cls(int(seed or 0), None if label is None else int(label), values[2:z_end],
                   values[z_end:cat_end], values[cat_end:cat_end + MAX_CONTINUOUS])

    def latents(self, spec: L.LatentSpec, z_base=None) -> dict:
        n_head = min(MAX_Z_SLIDERS, spec.z_dim)
        return L.compose_latents(spec, self.seed, self.z_head[:n_head], z_base, self.label,
                                 self.cat, self.cont)


def describe(entry: Loaded) -> str:
    """A short Markdown description of a loaded model and its latent space."""
    h, spec = entry.header, entry.spec
    train = h.get("train_config") or {}
    parts = [f"z: {spec.z_dim} dims ({spec.z_prior} prior)"]
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


def render(entry: Loaded, controls: Controls, encoded=None) -> tuple[np.ndarray, str]:
    """What one slider event does: controls -> latent -> generator -> display image, timed."""
    start = time.perf_counter()
    latents = controls.latents(entry.spec, encoded)
    image = show(L.generate_images(entry.model, latents)[0])
    ms = (time.perf_counter() - start) * 1000
    return image, f"server time {ms:.1f} ms (latents, generator, conversion)"


# ---------------------------------------------------------------- the Gradio app
def build_explorer(checkpoints_dir: str | Path = "checkpoints", runs_root: str | Path = "runs",
                   torch_threads: int | None = EXPLORER_THREADS):
    """The explorer as a `gradio.Blocks` (mount it, or `.launch()` it). torch_threads sets torch's
    (process-wide) CPU threads; None leaves them as they are."""
    import gradio as gr

    if torch_threads:
        torch.set_num_threads(torch_threads)
    cache = ModelCache()
    gif_dir = Path(tempfile.mkdtemp(prefix="genlab-gifs-"))
    examples_dir = Path(checkpoints_dir) / "examples"
    example_images = sorted(str(p) for p in examples_dir.glob("*.png")) if examples_dir.is_dir() else []

    def choices():
        return list_sources(checkpoints_dir, runs_root)

    def entry_or_error(source) -> Loaded:
        if not source:
            raise gr.Error("Pick a model first.")
        try:
            return cache.get(source)
        except Exception as error:                                   # shown in the UI, not a traceback
            raise gr.Error(f"Cannot load {source}: {error}") from None

    def z_head_values(entry: Loaded, seed, encoded):
        z = torch.as_tensor(encoded) if encoded is not None else L.prior_latents(entry.spec, seed)["z"][0]
        head = [round(float(v), 3) for v in z[:MAX_Z_SLIDERS]]
        return head + [0.0] * (MAX_Z_SLIDERS - len(head))

    with gr.Blocks(title="genlab latent explorer") as demo:
        gr.Markdown("## genlab latent explorer\nPick a model, then move the sliders: the image follows.")
        initial = choices()
        with gr.Row():
            with gr.Column(scale=3):
                source = gr.Dropdown(choices=initial, value=initial[0][1] if initial else None, label="Model",
                                     info="checkpoints/ and local runs (a run still training too)",
                                     allow_custom_value=True, elem_id="explorer-model")
                with gr.Row():
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
        with gr.Tab("Encode", visible=False) as encode_tab:
            gr.Markdown("Upload or pick an image; the encoder's mean latent is put on the sliders "
                        "(a bright background is inverted to match MNIST). Then move its latent on "
                        "the Sliders tab.")
            with gr.Row():
                upload = gr.Image(label="Image to encode", type="numpy", sources=["upload", "clipboard"],
                                  image_mode="RGB", height=IMAGE_SIDE)
                reconstruction = gr.Image(label="Decoded from its latent", format="png", interactive=False,
                                          height=IMAGE_SIDE)
            if example_images:
                gr.Examples(example_images, inputs=[upload], label="Test images")
            encode_button = gr.Button("Encode")

        controls = [seed, label, *z_sliders, *cat_sliders, *cont_sliders]

        # ---- handlers: each looks the model up in the cache (no reload per event)
        def on_source(source_value, seed_value):
            blank = ([gr.update(visible=False)] * (MAX_Z_SLIDERS + 1 + MAX_CATEGORICAL + MAX_CONTINUOUS))
            try:
                entry = cache.get(source_value) if source_value else None
            except Exception as error:
                return (f"**Cannot load** `{source_value}`: {error}", *blank, gr.update(choices=[]),
                        gr.update(), gr.update(visible=False), None, None, "", gr.update())
            if entry is None:
                return ("No model yet: train one or add checkpoints.", *blank, gr.update(choices=[]),
                        gr.update(), gr.update(visible=False), None, None, "", gr.update())
            spec = entry.spec
            low, high = L.z_range(spec)
            head = z_head_values(entry, seed_value or 0, None)
            z_updates = [gr.update(visible=i < spec.z_dim, minimum=low, maximum=high, value=head[i])
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
            values = Controls(int(seed_value or 0), 0, head, [0] * MAX_CATEGORICAL, [0.0] * MAX_CONTINUOUS)
            picture, timing = render(entry, values, None)
            run_active = not source_value.startswith(HUB_PREFIX) and Path(source_value).is_dir() and \
                is_active(read_status(Path(source_value)))
            return (describe(entry), *z_updates, label_update, *cat_updates, *cont_updates,
                    gr.update(choices=axes, value=axes[0]), gr.update(choices=["seeds"] + axes, value="seeds"),
                    gr.update(visible=hasattr(entry.model, "encode")), None, picture, timing,
                    gr.update(value=run_active))

        source_outputs = [info, *z_sliders, label, *cat_sliders, *cont_sliders, axis_x, axis_y, encode_tab,
                          encoded, image, latency, auto_reload]
        source.change(on_source, [source, seed], source_outputs, api_name="select_model")
        demo.load(on_source, [source, seed], source_outputs, api_visibility="private")

        def generate(source_value, encoded_value, *values):
            """Slider event -> image: compose the latent and run the generator once."""
            return render(entry_or_error(source_value), Controls.from_values(values), encoded_value)

        gr.on([c.input for c in (label, *z_sliders, *cat_sliders, *cont_sliders)], generate,
              [source, encoded, *controls], [image, latency], api_name="generate", trigger_mode="always_last",
              show_progress="hidden")

        def on_seed(source_value, *values):
            """A new seed: its first z dims go onto the sliders, and the image follows."""
            entry = entry_or_error(source_value)
            given = Controls.from_values(values)
            given.z_head = z_head_values(entry, given.seed, None)
            return (None, *given.z_head, *render(entry, given, None))

        seed_outputs = [encoded, *z_sliders, image, latency]
        seed.submit(on_seed, [source, *controls], seed_outputs, api_name="set_seed", show_progress="hidden")

        def on_randomize(source_value, *values):
            new_seed = int(np.random.default_rng().integers(0, 2**31 - 1))
            return (new_seed, *on_seed(source_value, new_seed, *values[1:]))

        randomize.click(on_randomize, [source, *controls], [seed, *seed_outputs], api_name="randomize",
                        show_progress="hidden")

        def on_reload(source_value, encoded_value, *values):
            """Reread a run's newest checkpoint if it changed; redraw the image."""
            if not source_value:
                return gr.update(), gr.update(), gr.update()
            try:
                entry, changed = cache.reload(source_value)
            except Exception as error:
                return f"**Cannot reload** `{source_value}`: {error}", gr.update(), gr.update()
            picture, timing = render(entry, Controls.from_values(values), encoded_value)
            note = " (reloaded)" if changed else " (unchanged)"
            return describe(entry) + note, picture, timing

        reload_button.click(on_reload, [source, encoded, *controls], [info, image, latency], api_name="reload")
        timer.tick(on_reload, [source, encoded, *controls], [info, image, latency], api_visibility="private",
                   show_progress="hidden")
        auto_reload.change(lambda on: gr.Timer(active=bool(on)), [auto_reload], [timer], api_visibility="private")
        refresh.click(lambda: gr.update(choices=choices()), None, [source], api_name="refresh")

        def on_hub(repo_id):
            repo_id = (repo_id or "").strip()
            if not repo_id:
                raise gr.Error("Type a Hub repo id such as user/genlab-mnist-dcgan.")
            value = HUB_PREFIX + repo_id
            return gr.update(choices=choices() + [(f"hub {repo_id}", value)], value=value)

        hub_button.click(on_hub, [hub_repo], [source], api_name="hub")

        def on_sweep(source_value, x_name, y_name, steps, rows, encoded_value, *values):
            """A grid moving one axis along columns; rows are seeds or a second axis."""
            entry = entry_or_error(source_value)
            given = Controls.from_values(values)
            try:
                axis_1 = L.parse_axis(x_name or "")
                axis_2 = None if y_name in (None, "", "seeds") else L.parse_axis(y_name)
                base = [given.latents(entry.spec, encoded_value)]
                for r in range(1, int(rows) if axis_2 is None else 1):
                    other = Controls(given.seed + r, given.label, [], given.cat, given.cont)
                    base.append(other.latents(entry.spec))
                grid = L.sweep_grid(entry.model, base, axis_1, int(steps), axis_2)
            except ValueError as error:
                raise gr.Error(str(error)) from None
            return show(grid, GRID_SIDE)

        sweep_button.click(on_sweep, [source, axis_x, axis_y, sweep_steps, sweep_rows, encoded, *controls],
                           [sweep_image], api_name="sweep")

        def interpolation(entry: Loaded, a, b, count, given: Controls):
            start = Controls(int(a or 0), given.label, [], given.cat, given.cont).latents(entry.spec)
            end_z = L.prior_latents(entry.spec, int(b or 0))["z"]
            return L.interpolation_latents(start, end_z, int(count))

        def on_frame(source_value, a, b, count, position, *values):
            """One frame of the slerp path at `position` in [0, 1]."""
            entry = entry_or_error(source_value)
            given = Controls.from_values(values)
            start = Controls(int(a or 0), given.label, [], given.cat, given.cont).latents(entry.spec)
            end_z = L.prior_latents(entry.spec, int(b or 0))["z"]
            start["z"] = L.slerp(start["z"], end_z, float(position))
            return show(L.generate_images(entry.model, start)[0])

        frame_inputs = [source, seed_a, seed_b, frames, frame, *controls]
        gr.on([frame.input, seed_a.submit, seed_b.submit], on_frame, frame_inputs, [frame_image],
              api_name="frame", trigger_mode="always_last", show_progress="hidden")

        def on_gif(source_value, a, b, count, *values):
            """All frames of the slerp path as an animated GIF (forth and back)."""
            entry = entry_or_error(source_value)
            batch = interpolation(entry, a, b, count, Controls.from_values(values))
            pictures = np.stack([L.upscale(f, 112) for f in L.generate_images(entry.model, batch)])
            path = gif_dir / f"slerp-{int(a or 0)}-{int(b or 0)}-{int(count)}-{time.time_ns()}.gif"
            path.write_bytes(L.encode_gif(pictures))
            return str(path), str(path)

        gif_button.click(on_gif, [source, seed_a, seed_b, frames, *controls], [gif_preview, gif_file],
                         api_name="gif")

        def on_encode(source_value, picture):
            """Encode an image with the model's encoder; its mean latent goes onto the sliders."""
            entry = entry_or_error(source_value)
            if not hasattr(entry.model, "encode"):
                raise gr.Error(f"{entry.header.get('model', 'this model')} has no encoder; pick a VAE.")
            if picture is None:
                raise gr.Error("Upload or pick an image first.")
            config = entry.model.config
            x = L.prepare_image(picture, config.channels, config.image_size)
            z = L.encode_image(entry.model, x)
            values = z.tolist()
            head = z_head_values(entry, 0, values)
            decoded = show(L.generate_images(entry.model, {"z": z[None]})[0])
            return (values, *head, decoded, decoded, "encoded: the sliders hold its first z dims")

        encode_button.click(on_encode, [source, upload], [encoded, *z_sliders, reconstruction, image, latency],
                            api_name="encode")
    return demo


def main(argv=None) -> None:
    """Launch the explorer alone: python -m genlab.explorer [--port 7860]."""
    parser = argparse.ArgumentParser(prog="python -m genlab.explorer", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default="checkpoints", help="Folder of checkpoint files.")
    parser.add_argument("--runs-root", default="runs", help="Folder of local runs.")
    parser.add_argument("--host", default="127.0.0.1", help="Use 0.0.0.0 to serve other machines.")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    build_explorer(args.checkpoints, args.runs_root).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
