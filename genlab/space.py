"""The Gradio Space: the latent explorer plus a "Train live" tab, free on ZeroGPU, unchanged on a CPU.

    python space_app.py                          # what an `sdk: gradio` Space runs (app_file)
    python -m genlab.space bundle OUT/           # OUT/: the Space's files and its README front matter

A visitor picks a model (every registered model whose generator the explorer can drive) and a
built-in data set, presses Train, and watches the loss curves and the sample grid stream while genlab's
own training loop (`genlab.training.train`, its run folder, its hooks) trains for a bounded time inside
one `@spaces.GPU(duration=...)` call. The run then appears in the explorer as runs/<name> ("Explore it")
and its inference-only safetensors export can be downloaded.

On ZeroGPU the GPU exists only inside the decorated function, which `spaces` runs in a forked worker
process; so the run folder is reserved, trained and ended there, in one process (the same shape as
genlab.runner's training process), and the function yields small picklable events while the main
process reads the run folder to draw the curves and the grid. Without ZeroGPU the decorator returns
the function unchanged and the same code trains on the CPU with smaller caps. The Space is always in
public mode: the caps of `space_limits` (each overridable by a GENLAB_MAX_* variable), built-in data
only, one run per visitor session at a time (runner's owner tokens), at most max_active_runs at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import spaces  # ZeroGPU's decorator, effect-free elsewhere (space_app.py imports it before torch)
import torch

from . import runner, runs
from .config import ConfigError
from .data import BUILTIN_DATASETS
from .explorer import build_explorer, launch_kwargs, prune_files
from .models import MODELS
from .settings import REPO, PublicLimits, Settings

TRAIN_SECONDS = 60               # one Train press trains at most this long (max_run_seconds)
GPU_MARGIN_S = 30                # + data loading, the first CUDA kernels, the last grid and checkpoint
QUICK_DATASETS = ("mnist", "fashion", "emoji64", "synthetic")  # downloaded by themselves, from packages.txt, or made in code
SPACE_PACKAGES = ("fonts-noto-color-emoji", "unicode-data")      # Debian packages of emoji64, in packages.txt
EXPORTS_KEPT = 8                 # downloadable exports kept in the temporary folder (the newest)
PLOT_POINTS = 400                # curve points drawn per series (the newest)
BOOKKEEPING = ("step", "epoch", "time", "images_per_s")
SPACE_APP = "space_app.py"
SDK_VERSION = "6.31.0"


# ---------------------------------------------------------------- where it runs, what it allows
def on_zero_gpu() -> bool:
    """Whether this process is a ZeroGPU Space (SPACES_ZERO_GPU=true, read by the `spaces` package)."""
    return bool(spaces.config.Config.zero_gpu)


def has_gpu() -> bool:
    """A GPU to train on: ZeroGPU's (inside the decorated call) or a local CUDA device."""
    return on_zero_gpu() or torch.cuda.is_available()


def space_limits(gpu: bool) -> PublicLimits:
    """The Space's caps: the public defaults, one Train press = at most TRAIN_SECONDS; fewer steps and
    one run at a time on a CPU."""
    return dataclasses.replace(PublicLimits.public_defaults(), max_run_seconds=float(TRAIN_SECONDS),
                               max_active_runs=2 if gpu else 1, max_steps=20_000 if gpu else 2000)


def space_schedule(gpu: bool) -> dict:
    """log / sample / checkpoint intervals: a grid every few seconds on either device."""
    return dict(log_every=50, sample_every=250, checkpoint_every=1000) if gpu else \
        dict(log_every=10, sample_every=50, checkpoint_every=500)


def space_settings(environ: Mapping[str, str] | None = None, gpu: bool | None = None) -> Settings:
    """Public settings for the Space: `space_limits`, where a GENLAB_MAX_* (etc.) variable does not set a cap."""
    env = dict(os.environ if environ is None else environ, GENLAB_PUBLIC="1")
    settings = Settings.from_env(env)
    defaults = space_limits(has_gpu() if gpu is None else gpu)
    unset = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(PublicLimits)
             if f.name != "builtin_data_only" and "GENLAB_" + f.name.upper() not in env}
    return dataclasses.replace(settings, limits=dataclasses.replace(settings.limits, **unset))


def trainable_models() -> list[str]:
    """Registered models a visitor can train and then explore: those with a latent generator (by capability)."""
    return sorted(name for name, cls in MODELS.items()
                  if callable(getattr(cls, "latent_spec", None)) and callable(getattr(cls, "generate", None)))


def space_datasets() -> list[str]:
    """The built-in data sets a Train press can use at once."""
    return [name for name in BUILTIN_DATASETS if name in QUICK_DATASETS]


class SpaceError(ValueError):
    """A Train request the Space refuses; the message is shown to the visitor as it is."""


def run_config(model: str, dataset: str, settings: Settings, schedule: dict,
               model_fields: dict | None = None) -> dict:
    """The validated run config of one Train press, checked against the public caps."""
    if model not in trainable_models():
        raise SpaceError("choose a model from the list")
    if dataset not in space_datasets():
        raise SpaceError(f"choose a data set from the list ({', '.join(space_datasets())})")
    steps = settings.limits.max_steps or 100_000
    train = dict(model=model, dataset=dataset, data_root=str(settings.data_root), steps=steps,
                 device="auto", eval_every=0, **schedule)
    try:
        return runner.check_config({"train": train, "model": dict(model_fields or {})}, settings)
    except (ConfigError, runner.RunnerError) as error:
        raise SpaceError(str(error)) from None


def reserve_run(config: dict, settings: Settings, owner: str) -> Path:
    """Make the run folder (config, owner) and mark it starting by this process, under the runs root's
    lock with the active-runs cap and storage eviction: the in-process twin of `runner.start_run`."""
    root = Path(settings.runs_root)
    with runner.root_lock(root):
        runner.clean_unfinished(root)
        runner.check_active(root, settings)
        runner.make_room(root, settings)
        run_dir = runs.new_run_dir(root, config["train"]["model"], config["train"]["dataset"])
        making = root / f"{runner.NEW_PREFIX}{os.urandom(6).hex()}"
        making.mkdir()
        runs.atomic_write_json(making / "config.json", config)
        runs.atomic_write_json(making / runner.OWNER_NAME, {"owner_sha256": runner.owner_hash(owner)})
        runs.make_reserve(making)
        os.rename(making, run_dir)                          # complete or absent
        runs.write_status(run_dir, "starting", step=0, total_steps=config["train"]["steps"], error=None)
    return run_dir


# ---------------------------------------------------------------- the GPU part: reserve, train, end
def gpu_seconds(config: dict, seconds: float, settings: Settings, owner: str) -> int:
    """What one call asks ZeroGPU for: the training time plus the margin."""
    return int(seconds) + GPU_MARGIN_S


@spaces.GPU(duration=gpu_seconds)
def train_events(config: dict, seconds: float, settings: Settings, owner: str):
    """Reserve a run folder, train it in this process for at most `seconds`, and yield small events
    {"run", "kind", "step"} as the loop reports them (several at once are merged); a refusal is a
    gr.Error (which ZeroGPU passes on to the visitor as it is). On ZeroGPU this runs in the GPU worker;
    elsewhere in the caller's thread."""
    import gradio as gr
    try:
        run_dir = reserve_run(config, settings, owner)
    except runner.RunnerError as error:
        raise gr.Error(str(error)) from None
    events: queue.Queue = queue.Queue()
    stop, timed_out = threading.Event(), threading.Event()
    deadline = time.monotonic() + seconds

    def should_stop() -> bool:
        if time.monotonic() >= deadline:
            timed_out.set()
        return stop.is_set() or timed_out.is_set()

    def work():
        from .training import train
        try:
            status = train(config, run_dir, resume=True, should_stop=should_stop,
                           on_event=lambda kind, payload: events.put((kind, payload)))
            if status["state"] == "stopped" and timed_out.is_set():
                runner.mark_ended_reason(run_dir, f"the time limit of {seconds:g} s per run was reached")
        except Exception as error:  # noqa: BLE001  (reported in status.json and to the visitor)
            runner.mark_failed(run_dir, error)
        finally:
            events.put(("done", None))

    thread = threading.Thread(target=work, name=f"train-{run_dir.name}", daemon=True)
    thread.start()
    yield {"run": run_dir.name, "kind": "reserved", "step": 0}
    try:
        done = False
        while not done:
            kinds, step = [], None
            items = [events.get()]
            while True:                                     # merge what arrived meanwhile
                try:
                    items.append(events.get_nowait())
                except queue.Empty:
                    break
            for kind, payload in items:
                done = done or kind == "done"
                kinds.append(kind)
                if isinstance(payload, dict) and "step" in payload:
                    step = payload["step"]
            yield {"run": run_dir.name, "kind": ",".join(kinds), "step": step}
    finally:                                                # also when the visitor leaves: stop, save, end
        stop.set()
        thread.join()


# ---------------------------------------------------------------- what the page shows
def curves_frame(run_dir: Path):
    """metrics.jsonl as a long table (step, value, series) of the logged losses, for gr.LinePlot."""
    import pandas as pd
    records = runs.read_metrics(run_dir)
    rows = []
    for record in records[-PLOT_POINTS:]:
        names = [k for k in record if k.startswith("loss")] or \
            [k for k in record if k not in BOOKKEEPING and not k.startswith("eval/")]
        rows += [(record["step"], float(record[k]), k) for k in names
                 if isinstance(record.get(k), (int, float)) and record.get("step") is not None]
    return pd.DataFrame(rows, columns=["step", "value", "series"])


def describe_run(run_dir: Path) -> str:
    """One Markdown line: the run, its state, step, speed, and why it ended."""
    status = runs.read_status(run_dir)
    state, step, total = status.get("state", "?"), status.get("step", 0), status.get("total_steps", "?")
    speed = f", {status['images_per_s']:.0f} images/s" if isinstance(status.get("images_per_s"), (int, float)) \
        else ""
    text = f"**{run_dir.name}**: {state}, step {step} of at most {total}{speed}"
    if status.get("device"):
        text += f" on {status['device']}"
    if status.get("stop_reason") and not runs.is_active(status):
        text += f"; {status['stop_reason']}"
    if state == "failed":
        text += f"; failed: {status.get('error', 'unknown error')}"
    return text + "."


def newest_grid(run_dir: Path) -> str | None:
    samples = runs.list_samples(run_dir)
    return str(samples[-1][1]) if samples else None


def export_run(run_dir: Path, folder: Path) -> Path:
    """The run's inference-only safetensors (fp16, without training-only parts) in `folder`."""
    from .checkpoint import export_checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    prune_files(folder, EXPORTS_KEPT - 1)
    return export_checkpoint(runs.checkpoint_path(run_dir), folder / f"{run_dir.name}.safetensors")


# ---------------------------------------------------------------- the app
def build_space(settings: Settings | None = None, *, model_fields: Mapping[str, dict] | None = None,
                schedule: dict | None = None, train_seconds: float | None = None):
    """The Space as a `gradio.Blocks`: "Train live" and "Explore" (genlab.explorer) tabs.

    `settings` default to `space_settings()`; `model_fields` are model config fields by model name
    (the tests pass the tiny configs), `schedule` log/sample/checkpoint intervals (default by device),
    `train_seconds` the time one Train press trains (default: the max_run_seconds cap)."""
    import gradio as gr

    settings = settings or space_settings()
    gpu = has_gpu()
    schedule = dict(schedule or space_schedule(gpu))
    limit = settings.limits.max_run_seconds or TRAIN_SECONDS
    seconds = min(train_seconds or limit, limit)
    exports = Path(tempfile.gettempdir()) / "genlab-space-exports"
    models, datasets = trainable_models(), space_datasets()
    explorer = build_explorer(settings)
    source = next(block for block in explorer.blocks.values() if getattr(block, "elem_id", None) == "explorer-model")

    def session_run(session) -> Path | None:
        name = (session or {}).get("run")
        return Path(settings.runs_root) / name if name else None

    def on_train(model, dataset, session):
        """Check, then stream the GPU call's events as curves, grid and status from the run folder."""
        session = dict(session or {})
        if not runner.token_valid(session.get("token"), settings):
            session["token"] = runner.new_owner_token(settings)
        previous = session_run(session)
        if previous is not None and runs.is_active(runs.read_status(previous)):
            raise gr.Error(f"your run {previous.name} is still training; stop it or wait for it to end")
        try:
            config = run_config(model, dataset, settings, schedule, (model_fields or {}).get(model))
            runner.check_active(Path(settings.runs_root), settings)       # a quick refusal before the GPU
        except (SpaceError, runner.RunnerError) as error:
            raise gr.Error(str(error)) from None
        yield ("Waiting for the GPU and loading the data ..." if gpu else "Loading the data ...",
               None, None, session, gr.update(interactive=False), gr.update(visible=False))
        for event in train_events(config, seconds, settings, session["token"]):
            run_dir = Path(settings.runs_root) / event["run"]
            session["run"] = event["run"]
            grid = newest_grid(run_dir) if "sample" in event["kind"] or "end" in event["kind"] else None
            yield (describe_run(run_dir), curves_frame(run_dir) if "log" in event["kind"] else gr.skip(),
                   grid or gr.skip(), session, gr.skip(), gr.skip())
        run_dir = session_run(session)
        ready = run_dir is not None and runs.checkpoint_path(run_dir).exists()
        download = gr.update(visible=False)
        if ready:
            try:
                download = gr.update(value=str(export_run(run_dir, exports)), visible=True)
            except Exception as error:  # noqa: BLE001  (the run stays explorable)
                gr.Warning(f"no download: {error}")
        yield (describe_run(run_dir) if run_dir else "", curves_frame(run_dir) if run_dir else gr.skip(),
               (newest_grid(run_dir) if run_dir else None) or gr.skip(), session,
               gr.update(interactive=ready), download)

    def on_stop(session):
        run_dir = session_run(session)
        if run_dir is None:
            raise gr.Error("you have no run to stop")
        try:
            runner.require_control(run_dir, settings, (session or {}).get("token"))
        except runner.RunnerError as error:
            raise gr.Error(str(error)) from None
        if runs.is_active(runs.read_status(run_dir)):
            runs.request_stop(run_dir)                      # the loop stops at its next check, then saves
        return describe_run(run_dir) + " Stopping ..."

    def on_explore(session):
        run_dir = session_run(session)
        if run_dir is None or not runs.checkpoint_path(run_dir).exists():
            raise gr.Error("train a model first")
        key = f"runs/{run_dir.name}"
        choices = explorer_choices()
        if key not in [value for _, value in choices]:
            raise gr.Error("this run is no longer stored on the server")
        return gr.update(choices=choices, value=key), gr.Tabs(selected="explore")

    def explorer_choices():
        from .explorer import Catalog
        return Catalog(settings).choices()

    caps = settings.limits
    intro = (f"Pick a model and a data set and press **Train**: genlab's training loop runs for at most "
             f"{seconds:g} s ({caps.max_steps or 'no'} steps at most, on "
             f"{'a ZeroGPU GPU' if on_zero_gpu() else ('the GPU' if gpu else 'this CPU')}), and the loss "
             f"curves and the sample grid follow it. Then explore what it learned, or download it. One run "
             f"per visitor at a time, {caps.max_active_runs or 'any number of'} on this Space at once; "
             f"runs are not kept across restarts.")
    with gr.Blocks(title="genlab: train live, explore the latents") as demo:
        gr.Markdown("# genlab\nDeep generative image models, trained live and explored by their latents.")
        session = gr.State({})
        with gr.Tabs() as tabs:
            with gr.Tab("Train live", id="train"):
                gr.Markdown(intro)
                with gr.Row():
                    model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                                        elem_id="space-model")
                    dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="Data set",
                                          info="MNIST is downloaded at the first run", elem_id="space-dataset")
                with gr.Row():
                    train_button = gr.Button("Train", variant="primary", elem_id="space-train")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="space-stop")
                status = gr.Markdown(elem_id="space-status")
                with gr.Row():
                    curves = gr.LinePlot(x="step", y="value", color="series", label="Losses", height=320,
                                         elem_id="space-curves")
                    grid = gr.Image(label="Samples (a fixed latent batch)", format="png", interactive=False,
                                    type="filepath", height=320, elem_id="space-grid")
                with gr.Row():
                    explore_button = gr.Button("Explore it", interactive=False, elem_id="space-explore")
                    download = gr.DownloadButton("Download (safetensors)", visible=False, elem_id="space-download")
            with gr.Tab("Explore", id="explore"):
                explorer.render()
        train_button.click(on_train, [model, dataset, session],
                           [status, curves, grid, session, explore_button, download], api_name="train",
                           concurrency_limit=caps.max_active_runs, concurrency_id="train")
        stop_button.click(on_stop, [session], [status], api_name="stop")
        explore_button.click(on_explore, [session], [source, tabs], api_name="explore")
    return demo


def launch(settings: Settings | None = None, **kwargs) -> None:
    """What space_app.py runs. Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Space
    sets 0.0.0.0 and 7860; locally Gradio's 127.0.0.1:7860) unless given."""
    settings = settings or space_settings()
    demo = build_space(settings)
    demo.queue(default_concurrency_limit=4)
    demo.launch(**launch_kwargs(settings), **kwargs)


# ---------------------------------------------------------------- the Space's folder
def front_matter(title: str = "genlab") -> str:
    """The README front matter of the Gradio Space (ZeroGPU is chosen under the Space's Settings -> Hardware)."""
    return ("---\n"
            f"title: {title}\n"
            "emoji: 🧪\n"
            "colorFrom: indigo\n"
            "colorTo: gray\n"
            "sdk: gradio\n"
            f"sdk_version: {SDK_VERSION}\n"
            "python_version: \"3.10\"\n"
            f"app_file: {SPACE_APP}\n"
            "suggested_hardware: zero-a10g\n"
            "pinned: false\n"
            "short_description: Train a GAN or VAE live for a minute, explore its latents\n"
            "---\n")


SPACE_FILES = ("genlab", "checkpoints", SPACE_APP)
NOT_ON_THE_SPACE = ("streamlit", "plotly", "pytest", "playwright", "gradio")   # the dashboard, tests; the SDK's own


def bundle(out: Path, title: str = "genlab") -> Path:
    """Write the Gradio Space's folder: the package, the shipped checkpoints, space_app.py, the
    requirements it needs (requirements.txt without the dashboard's and the tests'; Gradio comes with
    sdk_version) and a README.md with `front_matter`; returns `out`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SpaceError(f"{out} is not empty; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for name in SPACE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, out / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, out / name)
    kept = [line for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and re.split(r"[<>=!~ \[]", line.strip(), maxsplit=1)[0].lower() not in NOT_ON_THE_SPACE]
    (out / "requirements.txt").write_text("\n".join(kept) + "\n")
    (out / "packages.txt").write_text("\n".join(SPACE_PACKAGES) + "\n")       # apt packages Spaces install
    body = ("\n# genlab\n\nTrain a deep generative image model live for a minute (on ZeroGPU where the Space "
            "has it, on the CPU otherwise) and explore its latent space. Source and documentation: the genlab "
            "repository (docs/deployment.md).\n")
    (out / "README.md").write_text(front_matter(title) + body)
    return out


def read_front_matter(path: Path) -> dict:
    """The YAML front matter of a README as a dict (refused if it has none)."""
    import yaml
    text = Path(path).read_text()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise SpaceError(f"{path} has no front matter (--- ... --- at its top)")
    return yaml.safe_load(text[4:text.index("\n---\n", 4)])


def main(argv=None) -> int:
    """python -m genlab.space [serve | bundle OUT]."""
    parser = argparse.ArgumentParser(prog="python -m genlab.space", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="Run the Space locally (public mode, the Space's caps).")
    serve.add_argument("--host", default=None, help="Default: GRADIO_SERVER_NAME, else 127.0.0.1.")
    serve.add_argument("--port", type=int, default=None, help="Default: GRADIO_SERVER_PORT, else 7860.")
    folder = commands.add_parser("bundle", help="Write the Gradio Space's folder, ready for `hf upload`.")
    folder.add_argument("out", type=Path)
    folder.add_argument("--title", default="genlab")
    args = parser.parse_args(argv)
    if args.command == "bundle":
        try:
            print(bundle(args.out, args.title))
        except SpaceError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        return 0
    options = {"server_name": getattr(args, "host", None), "server_port": getattr(args, "port", None)}
    launch(**{k: v for k, v in options.items() if v is not None})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
