"""Evaluate a run or checkpoint: `python -m genlab.eval RUN_OR_CHECKPOINT [--out DIR]`.

Prints a table and writes `eval.json` and `eval.md` (into the run folder, or beside a checkpoint
file as `<name>.eval.json` / `<name>.eval.md`). Which metrics run depends on the model and data
(by capability, see `genlab.metrics`); `--metrics` picks some. `TrainingEvaluator` is the quick
version the training loop calls every `eval_every` steps: it runs the metrics the registry marks
quick, and their numbers land in metrics.jsonl under the `eval/*` keys each metric declares.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import runs
from .checkpoint import CheckpointError, load, resolve, serve_fast_on_cpu
from .config import ConfigError, TrainConfig
from .data import DataError, load_dataset
from .metrics import METRICS, EvalContext, applicable, evaluate, quick_log
from .metrics.features import try_judge

QUICK_SAMPLES = 2000


def load_splits(train_config: dict, data_root: str | None = None):
    """(train, test) ImageData of the data set a run was trained on, all images."""
    values = dict(train_config, max_images=None)
    if data_root:
        values["data_root"] = data_root
    config = TrainConfig(**values)
    return load_dataset(config, "train"), load_dataset(config, "test")


def output_paths(source: Path, out: str | None) -> tuple[Path, Path]:
    """Where eval.json / eval.md go: --out folder, the run folder, or beside the checkpoint file."""
    if out:
        return Path(out) / "eval.json", Path(out) / "eval.md"
    if source.is_dir():
        return source / "eval.json", source / "eval.md"
    stem = source.with_suffix("")
    return Path(f"{stem}.eval.json"), Path(f"{stem}.eval.md")


def markdown_report(report: dict) -> str:
    """The report as a small markdown document: one row per value, floors beside their metric."""
    lines = [f"# Evaluation of `{report['source']}`", "",
             f"model **{report['model']}**, data {report['dataset']}, step {report.get('step')}, "
             f"{report['settings'].get('generated_samples', report['settings']['num_samples'])} generated samples"
             f" (against {report['settings'].get('real_test_images', '?')} test images), seed {report['settings']['seed']}"
             + (f"; judge test accuracy {report['judge']['test_accuracy']:.2%}" if report.get("judge") else ""),
             "", "| metric | value | real-vs-real floor |", "|---|---|---|"]
    for name, values in report["results"].items():
        for key, value in values.items():
            if key.endswith(("_floor", "_floor_std", "seconds")) or isinstance(value, (list, dict)):
                continue
            floor = values.get(f"{key}_floor")
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"| {name}: {key} | {shown} | {'' if floor is None else f'{floor:.4g}'} |")
    for name, values in report["results"].items():
        for key, value in values.items():
            if isinstance(value, (list, dict)):
                lines.append(f"\n{name}: {key} = `{json.dumps(value)}`")
    for name, reason in report.get("skipped", {}).items():
        lines.append(f"\nskipped {name}: {reason}")
    return "\n".join(lines) + "\n"


def evaluate_checkpoint(source: str | Path, data_root: str | None = None, metrics: list[str] | None = None,
                        num_samples: int = 10000, seed: int = 0, iwae_k: int = 1000, iwae_images: int = 1000,
                        elbo_images: int | None = None, judge_path: str | None = None,
                        inception_weights: str | None = None, device: str = "cpu",
                        binarize_seeds: tuple = (0,)) -> dict:
    """Load a checkpoint, run the metrics that apply (or those named) and return the report dict."""
    started = time.time()
    model = serve_fast_on_cpu(load(source, device))
    header = model.checkpoint_header
    train_config = header.get("train_config")
    if not train_config:
        raise CheckpointError(f"{source}: the checkpoint does not record its data set (no train_config)")
    train_data, test_data = load_splits(train_config, data_root)
    judge, judge_reason = try_judge(judge_path, test_data.images.shape[1:], device, train_config.get("dataset", "mnist"))
    if judge is None and judge_path:                    # a judge asked for by path must be the run's own
        raise ValueError(f"--judge {judge_path}: {judge_reason}")
    context = EvalContext(model=model, train_images=train_data.images, test_images=test_data.images,
                          test_labels=test_data.labels, judge=judge, num_samples=num_samples, seed=seed,
                          iwae_k=iwae_k, iwae_images=iwae_images, elbo_images=elbo_images,
                          inception_weights=inception_weights, binarize_seeds=tuple(binarize_seeds))
    skipped = {}
    if metrics is None:
        metrics = applicable(context)
        if judge is None and judge_reason:
            skipped["judge metrics"] = judge_reason
        skipped.update(context.skipped)                 # what a capability probe found missing
        if "inception_fid" in metrics:                  # optional: a missing library or weights is reported
            from .metrics.features import InceptionUnavailable, load_inception
            try:
                load_inception(inception_weights)
            except InceptionUnavailable as error:
                metrics.remove("inception_fid")
                skipped["inception_fid"] = str(error)
    results = evaluate(context, metrics)
    return {"source": str(source), "checkpoint": str(resolve(source)), "model": header["model"],
            "step": header.get("step"), "dataset": train_config.get("dataset"),
            "settings": {"num_samples": num_samples, "generated_samples": context.generated_count,
                         "real_test_images": min(num_samples, len(test_data)),
                         "seed": seed, "iwae_k": iwae_k, "iwae_images": iwae_images,
                         "elbo_images": elbo_images or len(test_data), "device": str(device),
                         "binarize_seeds": list(binarize_seeds)},
            "judge": ({"dataset": judge.header.get("dataset"), "test_accuracy": judge.header.get("test_accuracy")}
                      if judge is not None else None),
            "results": results, "skipped": skipped, "seconds": round(time.time() - started, 1)}


class TrainingEvaluator:
    """Quick metrics during training (QUICK_SAMPLES samples): call with the model, get {"eval/...": number}.

    Which metrics run is the registry's choice (`Metric.quick`, and what applies to the model and data);
    the judge's features of the real images are computed once and kept across calls."""

    def __init__(self, train_config: dict, data_root: str | None = None, num_samples: int = QUICK_SAMPLES):
        self.train_data, self.test_data = load_splits(train_config, data_root)
        self.dataset = train_config.get("dataset", "mnist")
        self.num_samples = num_samples
        self.judge = None
        self.real_cache: dict = {}

    def __call__(self, model) -> dict[str, float]:
        if self.judge is None:                          # (re)try: the judge may be trained while a run goes on
            self.judge, _ = try_judge(None, self.test_data.images.shape[1:], model.device, self.dataset)
        context = EvalContext(model=model, train_images=self.train_data.images,
                              test_images=self.test_data.images[:self.num_samples],
                              test_labels=self.test_data.labels[:self.num_samples], judge=self.judge,
                              num_samples=self.num_samples, elbo_images=self.num_samples,
                              real_cache=self.real_cache)
        return quick_log(context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genlab.eval", description="Measure a trained model; "
                                     "writes eval.json and eval.md.")
    parser.add_argument("source", metavar="RUN_OR_CHECKPOINT", help="A run folder or a .safetensors checkpoint.")
    parser.add_argument("--out", help="Folder for eval.json / eval.md (default: the run folder, or beside the file).")
    parser.add_argument("--data-root", help="Where the data set is (default: the run's own data_root).")
    parser.add_argument("--metrics", help=f"Comma-separated subset of: {', '.join(METRICS)} (default: all that apply).")
    parser.add_argument("--samples", type=int, default=10000,
                        help="Generated (and real) images per set (default 10000; a data set with fewer train "
                             "images, as emoji64, uses all its test images and as many samples as train images).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the latents and of the IWAE samples.")
    parser.add_argument("--iwae-k", type=int, default=1000, help="Importance samples per image (likelihood models, default 1000).")
    parser.add_argument("--iwae-images", type=int, default=1000,
                        help="Test images for the IWAE estimate (default 1000 of 10000: k=1000 on all is slow on a CPU).")
    parser.add_argument("--elbo-images", type=int, help="Test images for the ELBO (default: all).")
    parser.add_argument("--binarize-seeds", default="0", help="Bernoulli likelihoods: comma-separated seeds of the "
                        "test set's binarization; the IWAE bound is averaged over them, each one reported (default 0).")
    parser.add_argument("--judge", help="Path of the data set's judge (default: checkpoints/DATASET-judge.safetensors).")
    parser.add_argument("--inception-weights", help="Local Inception-v3 FID weights for RGB data (torch-fidelity's .pth).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu).")
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    try:
        binarize_seeds = tuple(int(s) for s in args.binarize_seeds.split(","))
    except ValueError:
        parser.exit(2, f"genlab.eval: error: --binarize-seeds takes integers separated by commas, "
                       f"not {args.binarize_seeds!r}\n")
    try:
        report = evaluate_checkpoint(args.source, args.data_root, metrics, args.samples, args.seed, args.iwae_k,
                                     args.iwae_images, args.elbo_images, args.judge, args.inception_weights,
                                     args.device, binarize_seeds)
    except (CheckpointError, ConfigError, DataError, ValueError) as error:
        parser.exit(2, f"genlab.eval: error: {error}\n")
    except RuntimeError as error:                       # InceptionUnavailable and friends: a clear message
        parser.exit(2, f"genlab.eval: error: {error}\n")
    json_path, md_path = output_paths(Path(args.source), args.out)
    runs.atomic_write_json(json_path, report)
    markdown = markdown_report(report)
    runs.atomic_write_bytes(md_path, markdown.encode())
    print(markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
