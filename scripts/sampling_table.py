"""Judge FID, class accuracy, precision/recall and confident share of a sampling model over its knobs:
guidance w x sampling steps x sampler, each on the same 10,000 noises and classes (genlab eval's draw).

    python scripts/sampling_table.py checkpoints/mnist-ddpm.safetensors --data-root ../shared/data \
        --guidance 0,1,2,4 --steps 10,25,50 --out table.jsonl

One JSON line per setting is appended to --out as soon as it is measured (a run cut short keeps what it
measured), and a markdown table is printed at the end. Settings run in the order given: steps outer,
then samplers, then guidance. The model must have sampling knobs (`HasSamplingKnobs`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from genlab.checkpoint import load
from genlab.eval import load_splits
from genlab.metrics import EvalContext, evaluate
from genlab.metrics.features import try_judge
from genlab.models.base import HasSamplingKnobs

METRICS = ("fid", "judge_accuracy", "precision_recall", "mode_coverage")


def numbers(text: str, kind) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


def measure(model, context_args: dict, real_cache: dict, steps: int, sampler: str, guidance: float | None) -> dict:
    """Set the config's knobs (what `sample` defaults to), draw and judge: one row."""
    knobs = {"sampling_steps": steps, "sampler": sampler}
    if guidance is not None:
        knobs["guidance"] = guidance
    model.config = dataclasses.replace(model.config, **knobs)
    context = EvalContext(model=model, real_cache=real_cache, **context_args)
    names = [name for name in METRICS if name != "judge_accuracy" or context.judge_reads_classes]
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.time()
    context.samples()
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    sampling_s = time.time() - started
    results = evaluate(context, names)
    row = {"steps": steps, "sampler": sampler, "guidance": guidance, "samples": context.generated_count,
           "seed": context.seed, "batch_size": context.batch_size, "device": str(model.device),
           "sampling_s": round(sampling_s, 2), "images_per_s": round(context.generated_count / sampling_s, 1)}
    for values in results.values():
        row.update({key: value for key, value in values.items()
                    if key != "seconds" and isinstance(value, (int, float))})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--guidance", default="0,1,2,4", help="Guidance weights (conditional models).")
    parser.add_argument("--steps", default="10,25,50")
    parser.add_argument("--samplers", default="", help="Default: the config's sampler.")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500, help="Samples per draw (genlab eval's 500; smaller "
                        "is faster on a CPU, and draws other noise).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON lines, appended to.")
    args = parser.parse_args()

    model = load(args.checkpoint, args.device)
    if not isinstance(model, HasSamplingKnobs):
        parser.error(f"{args.checkpoint}: {model.name} has no sampling knobs")
    knobs = model.sampling_knobs()
    header = model.checkpoint_header
    train_data, test_data = load_splits(header["train_config"], args.data_root)
    judge, reason = try_judge(None, test_data.images.shape[1:], args.device,
                              header["train_config"].get("dataset", "mnist"))
    if judge is None:
        parser.error(f"no judge: {reason}")
    context_args = dict(train_images=train_data.images, test_images=test_data.images,
                        test_labels=test_data.labels, judge=judge, num_samples=args.samples, seed=args.seed,
                        batch_size=args.batch_size)
    weights = numbers(args.guidance, float) if "guidance" in knobs else [None]
    samplers = [s for s in args.samplers.split(",") if s] or [knobs["sampler"]["default"]]
    real_cache: dict = {}
    rows = []
    for steps in numbers(args.steps, int):
        for sampler in samplers:
            for guidance in weights:
                row = dict(model=model.name, step=header.get("step"), **measure(model, context_args, real_cache,
                                                                                steps, sampler, guidance))
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    with Path(args.out).open("a") as out:
                        out.write(json.dumps(row) + "\n")
    print("\n| steps | sampler | w | FID | class acc. | precision | recall | confident | images/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['steps']} | {r['sampler']} | {r['guidance']} | {r.get('fid', float('nan')):.3f} | "
              f"{r.get('judge_accuracy', float('nan')):.4f} | {r.get('precision', float('nan')):.3f} | "
              f"{r.get('recall', float('nan')):.3f} | {r.get('confident_share', float('nan')):.3f} | "
              f"{r['images_per_s']} |")


if __name__ == "__main__":
    main()
