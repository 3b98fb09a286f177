"""The command line: `python train.py --model dcgan --dataset mnist --steps 3000`.

Every TrainConfig field and every field of the chosen model's config is a flag. Options are
checked (argparse, then the config dataclasses, then the data set) before any training starts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runs
from .config import ConfigError, TrainConfig, field_specs
from .data import DataError
from .models import MODELS, get_model_class


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_value(kind: type):
    def parse(text: str):
        if text.lower() == "none":
            return None
        return kind(text)
    parse.__name__ = kind.__name__
    return parse


def add_fields(parser: argparse.ArgumentParser, config_class, title: str, skip=()) -> None:
    """One flag per config field, with its help, choices and default."""
    group = parser.add_argument_group(title)
    for spec in field_specs(config_class):
        if spec["derived"] or spec["name"] in skip:
            continue
        help_text = spec["help"] + f" (default: {spec['default']})"
        if spec["type"] is bool:
            group.add_argument(flag(spec["name"]), dest=spec["name"], action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag(spec["name"]), dest=spec["name"], type=parse_value(spec["type"]),
                               choices=spec["choices"], default=argparse.SUPPRESS, help=help_text,
                               metavar=None if spec["choices"] else spec["type"].__name__.upper())


def build_parser(model: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train a generative model; writes a run folder.",
        epilog="Example: python train.py --model dcgan --dataset mnist --steps 3000")
    parser.add_argument("--list-models", action="store_true", help="List the models and exit.")
    parser.add_argument("--resume", metavar="RUN_DIR", help="Continue the run in RUN_DIR (optionally "
                        "to a new --steps total).")
    parser.add_argument("--run-dir", help="Folder for this run (default: RUNS_ROOT/<time>-<model>-<dataset>).")
    parser.add_argument("--runs-root", default="runs", help="Where new runs are created (default: runs).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    add_fields(parser, TrainConfig, "training")
    if model in MODELS:
        add_fields(parser, get_model_class(model).config_class, f"{model} model",
                   skip={"channels", "image_size", "num_classes"})
    return parser


def progress_hook(total: int, enabled: bool):
    """An on_event hook that drives a tqdm bar with losses and images/s."""
    if not enabled:
        return lambda kind, payload: None
    from tqdm import tqdm
    bar = None

    def on_event(kind, payload):
        nonlocal bar
        if kind == "start":
            bar = tqdm(total=payload["total_steps"], initial=payload["step"], unit="step", dynamic_ncols=True)
        elif bar is None:
            return
        elif kind == "log":
            bar.update(payload["step"] - bar.n)
            shown = {k.split("/")[-1] if k.startswith("loss/") else k: v for k, v in payload.items()
                     if k.startswith(("loss/", "d/"))}
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in shown.items()},
                             "img/s": f"{payload['images_per_s']:.0f}"})
        elif kind == "end":
            bar.close()
    return on_event


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, then train or resume; returns the exit code."""
    from .training import make_config, train
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model")
    pre.add_argument("--resume")
    known, _ = pre.parse_known_args(argv)
    model = known.model
    if known.resume and not model:
        model = (runs.read_json(Path(known.resume) / "config.json") or {}).get("train", {}).get("model")
    parser = build_parser(model or "dcgan")
    args = vars(parser.parse_args(argv))
    if args.pop("list_models"):
        for name, cls in sorted(MODELS.items()):
            print(f"{name:10s} {(cls.__doc__ or '').strip().splitlines()[0]}")
        return 0
    resume_dir, run_dir, runs_root = args.pop("resume"), args.pop("run_dir"), args.pop("runs_root")
    show_progress = not args.pop("no_progress")
    train_fields = {s["name"] for s in field_specs(TrainConfig)}
    train_values = {k: v for k, v in args.items() if k in train_fields}
    model_values = {k: v for k, v in args.items() if k not in train_fields}
    try:
        if resume_dir:
            stored = runs.read_json(Path(resume_dir) / "config.json")
            if stored is None:
                parser.error(f"--resume {resume_dir}: not a run folder (no config.json)")
            stored["train"].update(train_values)
            stored["model"].update(model_values)
            config, run_dir = make_config(stored["train"], stored["model"]), Path(resume_dir)
            if not runs.is_active(runs.read_status(run_dir)):
                runs.clear_stop(run_dir)             # a stale request from an earlier stop
        else:
            config = make_config(dict(train_values, model=model or "dcgan"), model_values)
            run_dir = Path(run_dir) if run_dir else runs.new_run_dir(
                Path(runs_root), config["train"]["model"], config["train"]["dataset"])
        print(f"run folder: {run_dir}", file=sys.stderr)
        status = train(config, run_dir, on_event=progress_hook(config["train"]["steps"], show_progress),
                       resume=bool(resume_dir))
    except (ConfigError, DataError) as error:
        parser.exit(2, f"train.py: error: {error}\n")
    print(f"{status['state']} at step {status['step']}: {run_dir}", file=sys.stderr)
    return 0 if status["state"] in ("finished", "stopped") else 1
