#!/usr/bin/env python
"""Export trained MNIST runs into checkpoints/: fp16 inference weights, a sample grid and a model card.

    python -m tools.export_checkpoints --runs runs --out checkpoints [--log train_all.log] [--data-root ../shared/data]

For each registered model with a run RUNS/mnist-<model> (or the folder given by --run MODEL=DIR):
    OUT/mnist-<model>.safetensors   genlab.export_checkpoint(run, ..., half=True, drop=<the model's
                                    `training_only` sub-networks>, e.g. a GAN's discriminator)
    OUT/mnist-<model>.png           the fixed sample grid (`model.sample_grid`) drawn from the exported file
    OUT/mnist-<model>.md            the model card: exact command, steps, wall time, images/s, data, what
                                    the model can do and what was measured (by capability); its "What it
                                    shows" section is written by a person who looked
and OUT/examples/mnist-test-<digit>.png, the first MNIST test image of each digit (for VAE encoding).
A card that exists keeps its "What it shows" section.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path


import genlab
from genlab.checkpoint import read_checkpoint
from genlab import runs
from genlab.config import TrainConfig
from genlab.hub import capabilities, grid_rows, latent_description, sample_grid_png
from genlab.models import MODELS, HasCodes, HasLikelihood, get_model_class, has_classes

SHOWS_MARK = "## What it shows"
DATA_FIELDS = {"channels", "image_size", "num_classes"}          # model fields the data set sets


def train_command(run: Path) -> str:
    """The train.py command that reproduces a run: every config field that differs from its default."""
    config = runs.read_json(run / "config.json", {})
    train, model = config.get("train", {}), config.get("model", {})
    flags = [f"--model {train.get('model')}", f"--dataset {train.get('dataset')}"]
    train_defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    model_class = get_model_class(train["model"])
    model_defaults = {f.name: f.default for f in dataclasses.fields(model_class.config_class)}
    for values, defaults in ((train, train_defaults), (model, model_defaults)):
        for name, value in values.items():
            if name in ("model", "dataset") or name in DATA_FIELDS or value == defaults.get(name):
                continue
            if name == "data_root":
                value = "../shared/data"
            flags.append(f"--{name.replace('_', '-')} {value}")
    return f"python train.py {' '.join(flags)} --run-dir {run}"


def export_inference(source: str | Path, destination: str | Path) -> Path:
    """An fp16 inference copy of a run or checkpoint, without the model's `training_only` sub-networks."""
    header, _ = read_checkpoint(source)
    return genlab.export_checkpoint(source, destination, half=True,
                                    drop=get_model_class(header["model"]).training_only)


def measured(run: Path, model) -> list[str]:
    """The numbers of RUN/eval.json worth a card line, chosen by what the model can do."""
    results = runs.read_json(run / "eval.json", {}).get("results", {})
    lines = []
    if "fid" in results:
        lines.append(f"judge FID {results['fid']['fid']:.2f} (train-vs-test floor {results['fid']['fid_floor']:.2f})")
    if has_classes(model) and "judge_accuracy" in results:
        lines.append(f"class accuracy by the judge {results['judge_accuracy']['judge_accuracy']:.1%}")
    if isinstance(model, HasCodes) and "categorical_accuracy" in results:
        lines.append(f"code accuracy on the test set (Hungarian) {results['categorical_accuracy']['cat_acc']:.1%}")
    if isinstance(model, HasLikelihood):
        for name, label in (("iwae", f"IWAE k={results.get('iwae', {}).get('iwae_k')}"), ("elbo", "ELBO")):
            if name in results and "bits_per_dim" in results[name]:
                lines.append(f"test NLL ({label}) {results[name]['nll']:.2f} nats, "
                             f"{results[name]['bits_per_dim']:.4f} bits/dim")
    return lines


def wall_seconds(log: Path | None, model: str, last: dict) -> str:
    """The `<model> wall <s> s` line /usr/bin/time wrote for the run, else the training time logged."""
    if log and log.exists():
        found = re.findall(rf"^{model} wall ([\d.]+) s", log.read_text(), flags=re.M)
        if found:
            return f"{float(found[-1]):.0f} s"
    if last.get("time"):
        return f"{last['time']:.0f} s of training (metrics.jsonl)"
    return "not recorded"


def throughput(last: dict, train: dict, speeds: list) -> str:
    """Average images/s over the whole run, and the range of the logged intervals."""
    if not speeds or not last.get("time"):
        return "not recorded"
    average = last["step"] * train.get("batch_size", 64) / last["time"]
    return (f"{average:.0f} images/s on average; logged intervals ranged {min(speeds):.0f} to "
            f"{max(speeds):.0f} images/s (the CPU was shared)")


def card(model: str, run: Path, weights: Path, log: Path | None, dropped: list, shows: str,
         finished: bool = True) -> str:
    """The Markdown model card of one exported checkpoint; what it reports follows the model's capabilities."""
    config = runs.read_json(run / "config.json", {})
    metrics = runs.read_metrics(run)
    train = config.get("train", {})
    exported = genlab.load(weights)
    step = exported.checkpoint_header.get("step")
    description = (get_model_class(model).__doc__ or model).strip().splitlines()[0]
    steps = f"{step}" if finished else (f"{step} of the command's {train.get('steps')}: exported from the run's "
                                        f"latest checkpoint while it was still training")
    speeds = [m["images_per_s"] for m in metrics if "images_per_s" in m and m.get("step", 0) <= step]
    last = ([m for m in metrics if m.get("step", 0) <= step and "images_per_s" in m] or [{}])[-1]
    losses = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith(("loss/", "info/")))
    weights_note = "float16; " + (f"{', '.join(dropped)} left out (training only; `genlab.load` gives a model "
                                  "that samples)" if dropped else "every sub-network")
    numbers = measured(run, exported)
    return f"""# {weights.stem}

genlab `{model}`: {description} Trained on MNIST by genlab's own `train.py`.

| | |
|---|---|
| command | `{train_command(run)}` |
| steps | {steps} (batch {train.get('batch_size')}, {float(last.get('epoch', 0)):.1f} epochs), seed {train.get('seed')} |
| wall time | {wall_seconds(log, model, last) if finished else f"{last.get('time', 0):.0f} s to step {step}"} (a shared 2-core CPU; other work ran at the same time) |
| throughput | {throughput(last, train, speeds)} |
| data | MNIST train split, 60000 images, 1 x 28 x 28 |
| final losses | {losses or 'n/a'} |
| weights | `{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB, {weights_note} |
| exported with | `genlab.export_checkpoint(run, "{weights.name}", half=True{f", drop={tuple(dropped)!r}" if dropped else ""})` |
| load | `genlab.load("checkpoints/{weights.name}")` |
| latent | {latent_description(exported)} |
| can | {"; ".join(capabilities(exported)) or "sample"} |
| measured | {"; ".join(numbers) if numbers else "no eval.json in the run (`python -m genlab.eval RUN`)"} |

![sample grid]({weights.stem}.png)

The grid is `model.sample_grid` drawn from this file with the training loop's fixed seed (0); rows run over
{grid_rows(exported)}.

{SHOWS_MARK}

{shows}
"""


def export_examples(data_root: str, out: Path) -> None:
    """The first MNIST test image of each digit, as small PNGs for the explorer's VAE encoder."""
    from PIL import Image
    data = genlab.load_dataset(genlab.TrainConfig(dataset="mnist", data_root=data_root), "test")
    out.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        index = int((data.labels == digit).nonzero()[0])
        Image.fromarray(data.images[index, 0].numpy()).save(out / f"mnist-test-{digit}.png")


def export_run(model: str, run: Path, out: Path, log: Path | None, finished: bool) -> Path:
    """Export one run: inference weights, sample grid and card (keeping a card's "What it shows")."""
    weights = export_inference(run, out / f"mnist-{model}.safetensors")
    (out / f"mnist-{model}.png").write_bytes(sample_grid_png(genlab.load(weights)))
    card_path = out / f"mnist-{model}.md"
    shows = "(to be written after looking at the grid)"
    if card_path.exists() and SHOWS_MARK in card_path.read_text():
        shows = card_path.read_text().split(SHOWS_MARK, 1)[1].strip()
    dropped = genlab.load(weights).checkpoint_header.get("dropped", [])
    card_path.write_text(card(model, run, weights, log, dropped, shows, finished=finished))
    return weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default="checkpoints")
    parser.add_argument("--log", default=None, help="the training log with '<model> wall <s> s' lines")
    parser.add_argument("--data-root", default=None, help="MNIST root, to write examples/ (optional)")
    parser.add_argument("--models", nargs="*", default=sorted(MODELS), help="default: every registered model")
    parser.add_argument("--run", action="append", default=[], metavar="MODEL=DIR",
                        help="export this run for MODEL instead of RUNS/mnist-MODEL")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="export a run still training from its latest checkpoint (the card says so)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = dict(item.split("=", 1) for item in args.run)
    for model in args.models:
        run = Path(chosen.get(model, Path(args.runs) / f"mnist-{model}"))
        state = runs.read_status(run).get("state")
        if state != "finished" and not (args.allow_unfinished and runs.checkpoint_path(run).exists()):
            print(f"skip {model}: {run} is {state}")
            continue
        weights = export_run(model, run, out, Path(args.log) if args.log else None, finished=state == "finished")
        print(f"{model}: {weights} {weights.stat().st_size / 1e6:.1f} MB")
    if args.data_root:
        export_examples(args.data_root, out / "examples")

if __name__ == "__main__":
    main()
