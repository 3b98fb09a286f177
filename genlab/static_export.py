"""A static explorer: latent models as ONNX generators in a page that runs them in the browser.

`export_static(checkpoints, out_dir)` writes a folder any static host serves as it is:

    index.html, explorer.js, style.css     the page (copied from genlab/static/)
    ort/ort.js, ort/ort.wasm               onnxruntime-web's wasm backend, vendored from node_modules
    models.json                            one entry per model: its latent description, inputs, files
    models/<id>.onnx, .webp, .md           the generator, its sample grid, its model card
    README.md                              with --space: a Hugging Face static Space's front matter

Each generator is exported with `torch.onnx.export` as `GeneratorForExport`: named inputs
`latent_<key>` (one per latent the model's `generate` takes: z, y, cat, cont; batch 1) and one output
`image` (1, C, H, W) in [0, 1]. The page builds its sliders from `LatentSpec` alone, so any model with
latents (`HasLatents`) that draws an image in one pass (not `HasTrajectory`) is exported and any other
is skipped with one line.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from . import latent as L
from .checkpoint import CheckpointError, load, resolve
from .models import HasLatents, HasTrajectory

STATIC_DIR = Path(__file__).parent / "static"                  # the page: index.html, explorer.js, style.css
PAGE_FILES = ("index.html", "explorer.js", "style.css")
ORT_PACKAGE = Path("node_modules") / "onnxruntime-web" / "dist"
# The wasm backend only, its Emscripten glue bundled in: served as .js (every static server knows that
# type; not every one knows .mjs), and the single-threaded SIMD binary's one file.
ORT_FILES = {"ort.wasm.bundle.min.mjs": "ort.js", "ort-wasm-simd-threaded.wasm": "ort.wasm"}
MAX_Z_SLIDERS = 8                # sliders over the first z dims, as in the Gradio explorer; a seed draws the rest
MAX_CARD_BYTES = 200_000         # a model card larger than this is cut
MANIFEST = "models.json"
GENERATOR = "genlab export-static"
SPACE_README = """---
title: genlab static explorer
emoji: 🔢
colorFrom: indigo
colorTo: gray
sdk: static
app_file: index.html
pinned: false
---

# genlab static explorer

Generative models trained with genlab, running in your browser with
onnxruntime-web (WebAssembly, one thread): move a slider and the generator redraws the image on your
machine; nothing is sent anywhere. Written by `genlab export-static --space`.

Models: {models}.
"""


class StaticExportError(ValueError):
    """A static export that cannot be written (no models, a taken folder, onnxruntime-web missing)."""


class GeneratorForExport(nn.Module):
    """The model's `generate` with its latents as positional inputs (in `keys` order), giving images in
    [0, 1] instead of [-1, 1]: x01 = clamp((generate(**latents) + 1) / 2, 0, 1), (B, C, H, W)."""

    def __init__(self, model, keys: list[str]):
        super().__init__()
        self.model = model
        self.keys = list(keys)

    def forward(self, *latents):
        images = self.model.generate(**dict(zip(self.keys, latents)))          # (B, C, H, W) in [-1, 1]
        return ((images + 1) / 2).clamp(0, 1)


def find_ort(search=None) -> Path:
    """onnxruntime-web's dist folder: under the genlab checkout (where `npm ci` puts it) or the current folder."""
    roots = [Path(search)] if search else [Path(__file__).resolve().parents[1], Path.cwd()]
    for root in roots:
        folder = root / ORT_PACKAGE
        if all((folder / name).is_file() for name in ORT_FILES):
            return folder
    raise StaticExportError(f"onnxruntime-web is not installed (looked for {ORT_PACKAGE} under "
                            f"{', '.join(str(r) for r in roots)}): run `npm ci` in the genlab folder")


def model_id(checkpoint: Path, taken: set[str]) -> str:
    """A file-name-safe, unique id: the checkpoint's stem, or its run folder's name for a run's checkpoint."""
    path = resolve(checkpoint)
    stem = checkpoint.name if checkpoint.is_dir() else path.stem
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "model"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def latent_inputs(model) -> dict[str, torch.Tensor]:
    """One latent (batch 1) from the prior, seed 0: the example inputs the export traces, in key order."""
    return model.sample_latents(1, torch.Generator(device=model.device).manual_seed(0))


def export_onnx(model, path: Path) -> list[dict]:
    """Write the model's generator as ONNX; returns its inputs: name, latent key, dtype and shape.

    The graph is exported unoptimized (no BatchNorm folded into the layer before it), so that weights a
    checkpoint held as int8 or float16 stay exactly so and are stored so (`store_exact_int8`,
    `store_exact_half`); onnxruntime folds and fuses when it loads the model."""
    import onnx
    latents = latent_inputs(model)
    keys = list(latents)
    names = [f"latent_{key}" for key in keys]        # prefixed: a bare "cat" clashes with torch.cat's value name
    wrapper = GeneratorForExport(model, keys).eval()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):    # the exporter's progress lines
            program = torch.onnx.export(wrapper, tuple(latents[k] for k in keys), None, input_names=names,
                                        output_names=["image"], dynamo=True, optimize=False, verbose=False)
        proto = program.model_proto
        store_exact_int8(proto.graph)
        store_exact_half(proto.graph)
        onnx.checker.check_model(proto, full_check=True)
    except (torch.onnx.OnnxExporterError, onnx.checker.ValidationError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StaticExportError(f"the {model.name} generator could not be exported to ONNX: {first}") from None
    onnx.save(proto, str(path))
    return [{"name": name, "key": key, "dtype": str(latents[key].dtype).removeprefix("torch."),
             "shape": list(latents[key].shape)} for name, key in zip(names, keys)]


def exact_int8_rows(weights):
    """(q, scale) when each row (index of dim 0) of a float32 weight is exactly q * scale in float32, q an
    integer in [-127, 127] and scale = max|row| / 127 (as `checkpoint.quantize_int8` stores it); else None."""
    import numpy as np
    if weights.ndim < 2 or weights.shape[0] == 0 or weights.size == 0:
        return None
    rows = weights.reshape(weights.shape[0], -1)                                  # (R, N)
    estimate = (np.abs(rows).max(1) / np.float32(127)).astype(np.float32)         # (R,) within an ulp of scale
    if not (np.isfinite(estimate).all() and (estimate > 0).all()):
        return None
    found, scale, q = np.zeros(len(rows), bool), estimate.copy(), np.zeros(rows.shape, np.float32)
    for candidate in (estimate, np.nextafter(estimate, np.float32(0)), np.nextafter(estimate, np.float32(np.inf))):
        levels = np.rint(rows / candidate[:, None]).astype(np.float32)
        exact = (np.abs(levels) <= 127).all(1) & ((levels * candidate[:, None]) == rows).all(1) & ~found
        scale[exact], q[exact], found = candidate[exact], levels[exact], found | exact
    return (q.astype(np.int8).reshape(weights.shape), scale) if found.all() else None


def store_exact_int8(graph, min_elements: int = 4096) -> None:
    """Store every float32 weight that is exactly int8 times a per-row scale (a weight an int8 checkpoint
    held) as int8 and its scales, with a DequantizeLinear (axis 0) in front of the graph: a quarter of
    the bytes, the same values."""
    from onnx import TensorProto, helper, numpy_helper
    nodes = []
    for index, initializer in enumerate(graph.initializer):
        if initializer.data_type != TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(initializer)
        found = exact_int8_rows(weights) if weights.size >= min_elements else None
        if found is None:
            continue
        name = initializer.name
        graph.initializer[index].CopyFrom(numpy_helper.from_array(found[0], f"{name}__int8"))
        graph.initializer.append(numpy_helper.from_array(found[1], f"{name}__scale"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}__int8", f"{name}__scale"], [name], axis=0,
                                      name=f"{name}__dequantize"))
    for position, node in enumerate(nodes):
        graph.node.insert(position, node)


def store_exact_half(graph, min_elements: int = 1024) -> None:
    """Store every float32 weight that float16 holds exactly (as the weights of a float16 checkpoint) as
    float16 with a Cast back to float32 in front of the graph: half the bytes, the same values."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    casts = []
    for index, initializer in enumerate(graph.initializer):
        if initializer.data_type != TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(initializer)
        half = weights.astype(np.float16)
        if weights.size < min_elements or not np.array_equal(half.astype(np.float32), weights):
            continue
        name = initializer.name
        graph.initializer[index].CopyFrom(numpy_helper.from_array(half, f"{name}__float16"))
        casts.append(helper.make_node("Cast", [f"{name}__float16"], [name], to=TensorProto.FLOAT,
                                      name=f"{name}__to_float32"))
    for position, cast in enumerate(casts):
        graph.node.insert(position, cast)


def read_card(checkpoint: Path, model) -> str:
    """The checkpoint's model card (<stem>.md beside it), else a short one from the model's docstring."""
    card = resolve(checkpoint).with_suffix(".md")
    if card.is_file():
        return card.read_bytes()[:MAX_CARD_BYTES].decode("utf-8", errors="replace")
    doc = (type(model).__doc__ or "").strip().splitlines()
    return f"# {model.name}\n\n{doc[0] if doc else ''}\n"


def write_grid(checkpoint: Path, model, destination: Path) -> None:
    """The checkpoint's sample grid (<stem>.webp beside it), else one drawn now with the loop's seed 0."""
    grid = resolve(checkpoint).with_suffix(".webp")
    if grid.is_file():
        shutil.copyfile(grid, destination)
        return
    destination.write_bytes(L.sample_grid_image(model, image_format="WEBP"))


def model_entry(checkpoint: Path, model, ident: str, models_dir: Path) -> dict:
    """Export one latent model's generator, grid and card; returns its models.json entry."""
    spec = model.latent_spec()
    inputs = export_onnx(model, models_dir / f"{ident}.onnx")
    write_grid(checkpoint, model, models_dir / f"{ident}.webp")
    card = read_card(checkpoint, model)
    (models_dir / f"{ident}.md").write_text(card, encoding="utf-8")
    c = model.config
    return {"id": ident, "model": model.name, "onnx": f"models/{ident}.onnx", "grid": f"models/{ident}.webp",
            "card": f"models/{ident}.md", "spec": spec.to_dict(), "inputs": inputs,
            "image_shape": [c.channels, c.image_size, c.image_size],
            "z_sliders": min(MAX_Z_SLIDERS, L.z_sliders(spec)), "z_range": list(L.z_range(spec))}


def prepare_out(out_dir: Path) -> None:
    """An empty or new folder, or a previous static export (whose models/ is replaced); nothing else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise StaticExportError(f"{out_dir} is a file; give a folder to write the static explorer into")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        try:
            previous = json.loads((out_dir / MANIFEST).read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or previous.get("generator") != GENERATOR:
            raise StaticExportError(f"{out_dir} is not empty and holds no earlier static export; "
                                    f"give a new or empty folder")
        shutil.rmtree(out_dir / "models", ignore_errors=True)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    # Marked at once, so that an export stopped half-way is recognized (and replaced) by the next one.
    (out_dir / MANIFEST).write_text(json.dumps({"generator": GENERATOR, "models": []}))


def export_static(checkpoints, out_dir, space: bool = False, log=print, ort_dir=None) -> dict:
    """Write the static explorer of the latent models among `checkpoints` into `out_dir`; returns the
    manifest (models.json). Models without latents are skipped with one line through `log`."""
    out_dir = Path(out_dir)
    ort = find_ort(ort_dir)
    loaded, taken = [], set()
    for checkpoint in map(Path, checkpoints):
        model = load(checkpoint)
        if not isinstance(model, HasLatents):
            log(f"skipping {checkpoint}: its {model.name} model has no latent input to put on sliders")
            continue
        if isinstance(model, HasTrajectory):          # an iterative sampler: one network pass per step
            log(f"skipping {checkpoint}: its {model.name} model samples in many network passes; the static "
                f"explorer runs one-pass generators (the live explorer serves it)")
            continue
        loaded.append((checkpoint, model, model_id(checkpoint, taken)))
    if not loaded:
        raise StaticExportError("none of the checkpoints holds a one-pass generator with latents; nothing to export")
    prepare_out(out_dir)
    entries = []
    for checkpoint, model, ident in loaded:
        entries.append(model_entry(checkpoint, model, ident, out_dir / "models"))
        log(f"exported {checkpoint} as models/{ident}.onnx")
    for name in PAGE_FILES:
        shutil.copyfile(STATIC_DIR / name, out_dir / name)
    (out_dir / "ort").mkdir(exist_ok=True)
    for source, destination in ORT_FILES.items():
        shutil.copyfile(ort / source, out_dir / "ort" / destination)
    text = json.dumps({"generator": GENERATOR, "models": entries}, indent=1)
    (out_dir / MANIFEST).write_text(text)
    if space:
        names = ", ".join(entry["id"] for entry in entries)
        (out_dir / "README.md").write_text(SPACE_README.replace("{models}", names), encoding="utf-8")
    return json.loads(text)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def main(argv=None) -> int:
    """genlab export-static CHECKPOINT... OUT/ [--space]."""
    from .cli import Parser
    parser = Parser(
        prog="genlab export-static", usage="genlab export-static CHECKPOINT... OUT [--space] [--ort-dir DIR]",
        description="Write a static explorer of latent models: a page that runs each generator (ONNX) in the "
                    "browser with onnxruntime-web. Serve the folder with any static server, e.g. "
                    "`python -m http.server -d OUT`, or upload it as a static Hugging Face Space.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="Checkpoints (files or run folders), then the output folder (new, empty, or an "
                        "earlier static export).")
    parser.add_argument("--space", action="store_true",
                        help="Also write README.md with a static Hugging Face Space's front matter.")
    parser.add_argument("--ort-dir", metavar="DIR", help="A folder whose node_modules holds onnxruntime-web "
                        "(default: the genlab checkout, then the current folder; `npm ci` installs it).")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks of user errors.")
    args = parser.parse_args(argv)
    if len(args.paths) < 2:
        parser.exit(2, f"{parser.prog}: error: give at least one checkpoint and the output folder\n")
    *checkpoints, out_dir = args.paths
    try:
        export_static(checkpoints, out_dir, space=args.space, log=lambda line: print(line, file=sys.stderr),
                      ort_dir=args.ort_dir)
    except (CheckpointError, StaticExportError) as error:
        if args.debug:
            raise
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"{out_dir} ({folder_bytes(Path(out_dir)) / 1e6:.1f} MB): serve it with "
          f"`python -m http.server -d {out_dir}` and open http://localhost:8000/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
