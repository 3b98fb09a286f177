#!/usr/bin/env python
"""Export trained runs into checkpoints/: fp16 inference weights, a sample grid and a model card.

    python -m tools.export_checkpoints --runs runs --out checkpoints [--log train_all.log] [--data-root ../shared/data]
    python -m tools.export_checkpoints --models --run fashion-cgan=runs/fashion-cgan --run mnist-dcgan-r1=runs/r1

Each export has a name that starts with its run's data set, NAME = <dataset>-<model>[-<variant>]. By default
every registered model with a run RUNS/mnist-<model> is exported as mnist-<model>; `--run NAME=DIR` adds
(or replaces) one:
    OUT/NAME.safetensors   genlab.export_checkpoint(run, ..., half=True, drop=model.inference_drop()):
                           without the `training_only` sub-networks (e.g. a GAN's discriminator) and the
                           raw network a moving average replaces (a GAN's generator when it keeps an EMA)
    OUT/NAME.webp          the fixed sample grid (`model.sample_grid`) drawn from the exported file, lossless
                           WebP (the same pixels as a PNG, about 12% smaller: the folder has a 60 MB budget)
    OUT/NAME.md            the model card: exact command, steps, wall time, images/s, data, what the model
                           can do and what was measured (by capability); its "What it shows" section is
                           written by a person who looked
and OUT/examples/mnist-test-<digit>.png, the first MNIST test image of each digit (for VAE encoding).
A card that exists keeps its "What it shows" section.
"""
from __future__ import annotations

import argparse
import json
import dataclasses
import re
from pathlib import Path


import genlab
from genlab import runs
from genlab.config import TrainConfig
from genlab.hub import capabilities, grid_rows, latent_description
from genlab.latent import sample_grid_image
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
            flag = name.replace('_', '-')
            flags.append((f"--{flag}" if value else f"--no-{flag}") if isinstance(value, bool) else f"--{flag} {value}")
    return f"python train.py {' '.join(flags)} --run-dir {run}"


def export_inference(source: str | Path, destination: str | Path) -> Path:
    """An fp16 inference copy of a run or checkpoint, without what the model's `inference_drop()` names
    (its `training_only` sub-networks, e.g. a GAN's discriminator, and a network its moving average replaces)."""
    return genlab.export_checkpoint(source, destination, half=True)


def measured(run: Path, model) -> list[str]:
    """The numbers of RUN/eval.json worth a card line, chosen by what the model can do, with how they were
    taken (samples, seed, judge)."""
    report = runs.read_json(run / "eval.json", {})
    results, settings, judge = report.get("results", {}), report.get("settings", {}), report.get("judge") or {}
    lines = []
    if "fid" in results:
        lines.append(f"judge FID {results['fid']['fid']:.2f} (train-vs-test floor {results['fid']['fid_floor']:.2f})")
    if "mode_coverage" in results:
        coverage = results["mode_coverage"]
        lines.append(f"{coverage['classes_covered']}/{len(coverage['class_histogram'])} classes covered (>= 1% "
                     f"of samples each), KL to uniform {coverage['kl_to_uniform']:.3f}")
        if "confident_share" in coverage:
            lines.append(f"{coverage['confident_share']:.1%} of samples read with confidence > 0.9 (real test "
                         f"images: {coverage['confident_share_real']:.1%})")
    if has_classes(model) and "judge_accuracy" in results:
        lines.append(f"class accuracy by the judge {results['judge_accuracy']['judge_accuracy']:.1%}")
    if isinstance(model, HasCodes) and "categorical_accuracy" in results:
        lines.append(f"code accuracy on the test set (Hungarian) {results['categorical_accuracy']['cat_acc']:.1%}")
    if isinstance(model, HasLikelihood):
        for name, label in (("iwae", f"IWAE k={results.get('iwae', {}).get('iwae_k')}"), ("elbo", "ELBO")):
            if name in results and "bits_per_dim" in results[name]:
                lines.append(f"test NLL ({label}) {results[name]['nll']:.2f} nats, "
                             f"{results[name]['bits_per_dim']:.4f} bits/dim")
    lines += sampling_table_lines(run, model)
    if lines and settings:
        where = f"{settings.get('generated_samples', settings.get('num_samples'))} samples"
        if settings.get("real_test_images"):
            where += f" against {settings['real_test_images']} test images"
        where += f", latent seed {settings.get('seed')}"
        if settings.get("device", "cpu") != "cpu":            # another random stream: a CPU rerun draws other latents
            where += f" drawn on {settings['device']}"
        if judge:
            where += f", the {judge.get('dataset')} judge ({judge.get('test_accuracy', 0):.2%} test accuracy)"
        lines.append(f"taken from {'this file' if report.get('source', '').endswith('.safetensors') else 'the run'} "
                     f"by `python -m genlab.eval` on {where}")
    return lines


def sampling_table_lines(run: Path, model) -> list[str]:
    """The rows of RUN/sampling-table.jsonl (`scripts/sampling_table.py` on this file: judge metrics per
    guidance, steps and sampler) measured at the exported step."""
    path = run / "sampling-table.jsonl"
    step = model.checkpoint_header.get("step")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    at_step = [r for r in rows if r.get("step") == step]
    lines = []
    for r in at_step:
        knobs = f"{r['steps']} {r['sampler']} steps" + (f", w = {r['guidance']:g}" if r.get("guidance") is not None else "")
        accuracy = f", class accuracy {r['judge_accuracy']:.2%}" if "judge_accuracy" in r else ""
        lines.append(f"{knobs}: judge FID {r['fid']:.3f} (floor {r['fid_floor']:.2f}){accuracy}, "
                     f"{r['confident_share']:.1%} confident")
    if lines:
        def values(key, default) -> str:                 # what the rows at this step used, each value once
            return " and ".join(str(v) for v in sorted({r.get(key, default) for r in at_step}))
        batch = values("batch_size", 500)
        lines.append(f"each on {values('samples', '?')} samples, seed {values('seed', 0)}, drawn on "
                     f"{values('device', '?')}, by `python scripts/sampling_table.py FILE"
                     f"{f' --batch-size {batch}' if batch != '500' else ''}` (genlab eval's metrics, the knobs set per row)")
    return lines


def wall_seconds(log: Path | None, names: tuple, last: dict) -> str:
    """The `<name> wall <s> s` line /usr/bin/time wrote for the run (NAME: the model, export or run folder
    name), else the training time logged."""
    if log and log.exists():
        pattern = "|".join(re.escape(name) for name in names)
        found = re.findall(rf"^(?:{pattern}) wall ([\d.]+) s", log.read_text(), flags=re.M)
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
            f"{max(speeds):.0f} images/s (the machine was shared)")


def machine(run: Path) -> str:
    """Where the run trained, from its status (the device it ran on)."""
    device = runs.read_status(run).get("device", "cpu")
    if device == "cpu":
        return "a shared 2-core CPU; other work ran at the same time"
    return f"on {'a CUDA GPU' if device == 'cuda' else device}; the notes below say which and what ran beside it"


DATASET_TITLES = {"mnist": "MNIST", "fashion": "Fashion-MNIST", "emoji64": "the emoji64 set",
                  "celeba64": "CelebA (64x64)", "imagefolder": "an image folder", "synthetic": "synthetic data"}


def data_description(train: dict, model_config: dict, data_root: str | None) -> str:
    """The card's data line: split, image count and shape (the count read from the data set when it loads)."""
    shape = f"{model_config.get('channels')} x {model_config.get('image_size')} x {model_config.get('image_size')}"
    try:
        fields = {k: v for k, v in train.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
        count = f"{len(genlab.load_dataset(TrainConfig(**dict(fields, data_root=data_root or fields.get('data_root'))), 'train'))} images"
    except Exception as error:                     # noqa: BLE001 - the card says what it could not read
        count = f"image count not read ({type(error).__name__})"
    return f"{DATASET_TITLES.get(train.get('dataset'), train.get('dataset'))} train split, {count}, {shape}"


def card(model: str, run: Path, weights: Path, log: Path | None, dropped: list, shows: str,
         finished: bool = True, data_root: str | None = None) -> str:
    """The Markdown model card of one exported checkpoint; what it reports follows the model's capabilities."""
    config = runs.read_json(run / "config.json", {})
    metrics = runs.read_metrics(run)
    train = config.get("train", {})
    exported = genlab.load(weights)
    step = exported.checkpoint_header.get("step")
    description = (get_model_class(model).__doc__ or model).strip().splitlines()[0]
    how = {"stopped": "stopped by hand at this step and exported from its last checkpoint",
           "interrupted": "its process ended without a final status (stopped by a signal or a machine restart) "
                          "and it was exported from its last checkpoint"}.get(
        runs.read_status(run).get("state"), "exported from the run's latest checkpoint while it was still training")
    steps = f"{step}" if finished else f"{step} of the command's {train.get('steps')}: {how}"
    speeds = [m["images_per_s"] for m in metrics if "images_per_s" in m and m.get("step", 0) <= step]
    last = ([m for m in metrics if m.get("step", 0) <= step and "images_per_s" in m] or [{}])[-1]
    losses = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith(("loss/", "info/")))
    weights_note = "float16; " + (f"{', '.join(dropped)} left out (sampling does not need it: training-only "
                                  "parts, or the raw network whose moving average samples; `genlab.load` gives "
                                  "a model that samples)" if dropped else "every sub-network")
    numbers = measured(run, exported)
    return f"""# {weights.stem}

genlab `{model}`: {description} Trained on {DATASET_TITLES.get(train.get('dataset'), train.get('dataset'))} by genlab's own `train.py`.

| | |
|---|---|
| command | `{train_command(run)}` |
| steps | {steps} (batch {train.get('batch_size')}, {float(last.get('epoch', 0)):.1f} epochs), seed {train.get('seed')} |
| wall time | {wall_seconds(log, (model, weights.stem, run.name), last) if finished else f"{last.get('time', 0):.0f} s to step {step}"} ({machine(run)}) |
| throughput | {throughput(last, train, speeds)} |
| data | {data_description(train, config.get('model', {}), data_root)} |
| final losses | {losses or 'n/a'} |
| weights | `{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB, {weights_note} |
| exported with | `genlab.export_checkpoint(run, "{weights.name}", half=True{f", drop={tuple(dropped)!r}" if dropped else ""})` |
| load | `genlab.load("checkpoints/{weights.name}")` |
| latent | {latent_description(exported)} |
| can | {"; ".join(capabilities(exported)) or "sample"} |
| measured | {"; ".join(numbers) if numbers else "no eval.json in the run (`python -m genlab.eval RUN`)"} |

![sample grid]({weights.stem}.webp)

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


def export_run(name: str, run: Path, out: Path, log: Path | None, finished: bool,
               data_root: str | None = None) -> Path:
    """Export one run as OUT/NAME.*: inference weights, sample grid and card (keeping a card's "What it shows")."""
    model = runs.read_json(run / "config.json", {}).get("train", {}).get("model")
    weights = export_inference(run, out / f"{name}.safetensors")
    (out / f"{name}.webp").write_bytes(sample_grid_image(genlab.load(weights), image_format="WEBP"))
    card_path = out / f"{name}.md"
    shows = "(to be written after looking at the grid)"
    if card_path.exists() and SHOWS_MARK in card_path.read_text():
        shows = card_path.read_text().split(SHOWS_MARK, 1)[1].strip()
    dropped = genlab.load(weights).checkpoint_header.get("dropped", [])
    card_path.write_text(card(model, run, weights, log, dropped, shows, finished=finished, data_root=data_root))
    return weights


def export_name(name: str, run: Path) -> str:
    """NAME checked against the run: it must start with the run's data set (`fashion-cgan`, `mnist-dcgan-r1`)."""
    dataset = runs.read_json(run / "config.json", {}).get("train", {}).get("dataset")
    if not name.startswith(f"{dataset}-") or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise SystemExit(f"error: export name {name!r} must be <dataset>-<model>[-<variant>] in lower case, "
                         f"starting with the run's data set {dataset!r}")
    return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default="checkpoints")
    parser.add_argument("--log", default=None, help="the training log with '<model> wall <s> s' lines")
    parser.add_argument("--data-root", default=None, help="MNIST root, to write examples/ (optional)")
    parser.add_argument("--models", nargs="*", default=sorted(MODELS),
                        help="models whose RUNS/mnist-MODEL runs are exported (default: every registered model)")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="export the run DIR as NAME (<dataset>-<model>[-<variant>]), e.g. fashion-cgan=runs/x")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="export a run still training from its latest checkpoint (the card says so)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = {f"mnist-{model}": Path(args.runs) / f"mnist-{model}" for model in args.models}
    chosen.update((name, Path(folder)) for name, folder in (item.split("=", 1) for item in args.run))
    for name, run in chosen.items():
        state = runs.read_status(run).get("state")
        if state != "finished" and not (args.allow_unfinished and runs.checkpoint_path(run).exists()):
            print(f"skip {name}: {run} is {state}")
            continue
        weights = export_run(export_name(name, run), run, out, Path(args.log) if args.log else None,
                             finished=state == "finished", data_root=args.data_root)
        print(f"{name}: {weights} {weights.stat().st_size / 1e6:.1f} MB")
    if args.data_root:
        export_examples(args.data_root, out / "examples")

if __name__ == "__main__":
    main()
