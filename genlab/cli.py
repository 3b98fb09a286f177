"""The `genlab` command:

    genlab train --model dcgan --dataset mnist --steps 3000     train a model; writes a run folder
    genlab resume RUN_DIR [--steps 6000]                        continue a run (curves and grids too)
    genlab eval RUN_OR_CHECKPOINT                               measure a model (genlab.eval)
    genlab serve [--port 8501]                                  dashboard + explorer on one port
    genlab explore [--port 7860]                                the latent explorer alone
    genlab hub push|save|pull ...                               Hugging Face Hub
    genlab export CHECKPOINT_OR_RUN OUT.safetensors             an inference-only copy
    genlab control RUN_DIR pause|continue|step [--phase D] [--k N]|slow SECONDS   step by step
    genlab export-static CHECKPOINT... OUT/ [--space]           a static explorer (runs in the browser)

For train, every TrainConfig field and every field of the chosen model's config is a flag; options
are checked (argparse, then the config dataclasses, then the data set) before any training starts.
A user error (a bad option, a missing data set, a bad checkpoint, a run folder that is taken) is one
line on stderr and exit code 2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runs
from .checkpoint import CheckpointError
from .config import DEFAULT_MODEL, ConfigError, TrainConfig, field_specs
from .data import DataError
from .models import MODELS, get_model_class
from .runner import RunnerError
from .settings import Settings

USER_ERRORS = (ConfigError, DataError, CheckpointError, RunnerError)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: `genlab train: error: ... (see --help)`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def build_parser(model: str | None, settings: Settings, prog: str = "genlab train") -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="Train a generative model; writes a run folder.",
                    epilog="Example: genlab train --model dcgan --dataset mnist --steps 3000")
    parser.add_argument("--list-models", action="store_true", help="List the models and exit.")
    parser.add_argument("--resume", metavar="RUN_DIR", help="Continue the run in RUN_DIR (optionally "
                        "to a new --steps total).")
    parser.add_argument("--run-dir", help="Folder for this run (default: RUNS_ROOT/<time>-<model>-<dataset>).")
    parser.add_argument("--runs-root", default=str(settings.runs_root),
                        help=f"Where new runs are created (default: $GENLAB_RUNS_ROOT or {settings.runs_root}).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks of user errors.")
    add_fields(parser, TrainConfig, "training")
    if model in MODELS:
        add_fields(parser, get_model_class(model).config_class, f"{model} model",
                   skip={"channels", "image_size", "num_classes"})
    return parser


def progress_hook(enabled: bool, run_dir: Path):
    """An on_event hook that names the run folder once training starts, then drives a tqdm bar."""
    bar = None

    def on_event(kind, payload):
        nonlocal bar
        if kind == "start":
            print(f"run folder: {run_dir}", file=sys.stderr)
        if not enabled:
            return
        if kind == "start":
            from tqdm import tqdm
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


def make_evaluator(train_config: dict):
    """genlab.eval's quick evaluator for a run that asks for one (eval_every > 0), else None."""
    if not train_config.get("eval_every"):
        return None
    from .eval import TrainingEvaluator
    return TrainingEvaluator(train_config)


def train_main(argv: list[str], settings: Settings, prog: str = "genlab train") -> int:
    """Parse, validate, then train or resume; returns the exit code."""
    from .training import TrainingDiverged, make_config, prepare_run, train
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model")
    pre.add_argument("--resume")
    known, _ = pre.parse_known_args(argv)
    model = known.model
    if known.resume and not model:
        model = ((runs.read_json(Path(known.resume) / "config.json") or {}).get("train") or {}).get("model")
    parser = build_parser(model or DEFAULT_MODEL, settings, prog)
    args = vars(parser.parse_args(argv))
    if args.pop("list_models"):
        for name, cls in sorted(MODELS.items()):
            print(f"{name:10s} {(cls.__doc__ or '').strip().splitlines()[0]}")
        return 0
    resume_dir, run_dir, runs_root = args.pop("resume"), args.pop("run_dir"), args.pop("runs_root")
    show_progress, debug = not args.pop("no_progress"), args.pop("debug")
    train_fields = {s["name"] for s in field_specs(TrainConfig)}
    train_values = {k: v for k, v in args.items() if k in train_fields}
    model_values = {k: v for k, v in args.items() if k not in train_fields}
    try:
        if resume_dir:
            prepared = prepare_run(resume_dir, {"train": train_values, "model": model_values}, resume=True)
        else:
            train_values.setdefault("data_root", str(settings.data_root))
            config = {"train": dict(train_values, model=model or DEFAULT_MODEL), "model": model_values}
            if run_dir is None:          # validated before a folder is named after its model and data set
                checked = make_config(config["train"], config["model"])
                run_dir = runs.new_run_dir(Path(runs_root), checked["train"]["model"], checked["train"]["dataset"])
            prepared = prepare_run(run_dir, config, resume=False)
        status = train(prepared.config, prepared.run_dir, on_event=progress_hook(show_progress, prepared.run_dir),
                       resume=prepared.resume, evaluator=make_evaluator(prepared.config["train"]))
    except USER_ERRORS as error:
        if debug:
            raise
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except TrainingDiverged as error:
        if debug:
            raise
        parser.exit(1, f"{parser.prog}: error: {error} (the run is marked failed)\n")
    print(f"{status['state']} at step {status['step']}: {prepared.run_dir}", file=sys.stderr)
    return 0 if status["state"] in ("finished", "stopped") else 1


def resume_main(argv: list[str], settings: Settings) -> int:
    """genlab resume RUN_DIR [--steps N] [other resumable options]: the same as train --resume RUN_DIR."""
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print("usage: genlab resume RUN_DIR [--steps N] [--log-every N] [--device D] ... [--debug]\n\n"
                  "Continue the run in RUN_DIR; the options are those of `genlab train` that a resumed run "
                  "may change.")
            return 0
        print("genlab resume: error: give the run folder to resume: genlab resume RUN_DIR [--steps N]",
              file=sys.stderr)
        return 2
    return train_main(["--resume", argv[0], *argv[1:]], settings, prog="genlab resume")


def export_main(argv: list[str], settings: Settings) -> int:
    """genlab export SRC DST: weights and config only, fp16, without the model's training-only parts."""
    from .checkpoint import export_checkpoint
    parser = Parser(prog="genlab export", description="Write an inference-only copy of a checkpoint "
                    "(no optimizer or RNG state, without the sub-networks sampling does not need).")
    parser.add_argument("source", help="A run folder or a .safetensors checkpoint.")
    parser.add_argument("destination", help="The .safetensors file to write.")
    parser.add_argument("--fp32", action="store_true", help="Keep float32 weights (default: float16).")
    parser.add_argument("--int8", type=int, metavar="MIN_ELEMENTS", default=None,
                        help="Store each weight of at least MIN_ELEMENTS elements as int8 with one scale per "
                             "row (half of float16's bytes; loads back as float), e.g. 1000000.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks of user errors.")
    args = parser.parse_args(argv)
    if args.int8 is not None and args.int8 < 1:
        parser.error("--int8 takes a positive number of elements, e.g. 1000000")
    try:
        path = export_checkpoint(args.source, args.destination, half=not args.fp32, int8_min_numel=args.int8)
    except USER_ERRORS as error:
        if args.debug:
            raise
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(path)
    return 0


def control_main(argv: list[str], settings: Settings) -> int:
    """genlab control RUN_DIR pause|continue|step|slow: drive a running run step by step."""
    from . import runner
    parser = Parser(prog="genlab control", description="Pause a running run, continue it, order manual "
                    "steps (the run pauses first) or slow it down; the run reads RUN_DIR/control.json "
                    "between steps.")
    parser.add_argument("run_dir", type=Path, help="The run folder of a running run.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="pause|continue|step|slow")
    actions.add_parser("pause", help="Pause between steps (the process keeps its place).")
    actions.add_parser("continue", help="Train on by itself again.")
    step = actions.add_parser("step", help="Run manual steps (logged and sampled after each).")
    step.add_argument("--phase", action="append", help="Run only this phase of the model (e.g. D or G; "
                      "repeatable); default: all phases.")
    step.add_argument("--k", type=int, default=1, help=f"How many steps (1 to {runs.MAX_STEP_K}; default 1).")
    slow = actions.add_parser("slow", help="Sleep between steps (0 turns it off).")
    slow.add_argument("seconds", type=float, help=f"0 to {runs.MAX_SLOW_S:g} seconds.")
    args = parser.parse_args(argv)
    try:
        if args.action == "pause":
            runner.pause_run(args.run_dir, settings)
        elif args.action == "continue":
            runner.continue_run(args.run_dir, settings)
        elif args.action == "step":
            runner.step_run(args.run_dir, settings, phases=args.phase, k=args.k)
        else:
            runner.set_slow_motion(args.run_dir, settings, seconds=args.seconds)
    except USER_ERRORS as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"{args.action}: {args.run_dir}", file=sys.stderr)
    return 0


def export_static_main(argv: list[str], settings: Settings) -> int:
    from .static_export import main
    return main(argv)


def eval_main(argv: list[str], settings: Settings) -> int:
    from .eval import main
    return main(argv)


def serve_main(argv: list[str], settings: Settings) -> int:
    from .serve import main
    return main(argv, settings) or 0


def explore_main(argv: list[str], settings: Settings) -> int:
    from .explorer import main
    # The settings' folders as defaults: flags given on the command line come later and win.
    return main(["--checkpoints", str(settings.checkpoints_dir), "--runs-root", str(settings.runs_root),
                 *argv]) or 0


def hub_main(argv: list[str], settings: Settings) -> int:
    from .hub import main
    return main(argv)


COMMANDS = {"train": train_main, "resume": resume_main, "eval": eval_main, "serve": serve_main,
            "explore": explore_main, "hub": hub_main, "export": export_main,
            "control": control_main, "export-static": export_static_main}


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    """`genlab COMMAND ...`; returns the exit code (argparse's exits included, for in-process callers)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: genlab COMMAND ...  (genlab COMMAND --help for its options)\n\n" + __doc__.split("\n\n")[1])
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"genlab: error: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    settings = settings if settings is not None else Settings.from_env()
    try:
        return command(argv[1:], settings) or 0
    except SystemExit as exit_:                       # argparse's --help and refusals
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
