"""InfoGAN on MNIST over several seeds: the categorical code as an unsupervised classifier of the
MNIST test set (Hungarian-matched), as Chen 2016 measures its 5% error; plus the judge's purity
of each category of G(z, c). `--model` takes any registered model with categorical codes it can
infer (HasCodes); one without them is refused before training.

    python -m scripts.infogan_seeds --data-root ../shared/data --seeds 0 1 2 --steps 5000 \
        --batch-size 128 --eval-every 250 [--reuse 0=runs/mnist-infogan] [--runs-root runs/infogan-seeds]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from scripts.experiments import evaluate_and_write, mean_std, train_or_reuse

from genlab import runs
from genlab.config import ConfigError
from genlab.metrics import categorical_codes
from genlab.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--model", default="infogan", help="A registered model with categorical codes.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=5000,
                        help="The paper's code: 50 epochs of 100 updates, batch 128.")
    parser.add_argument("--batch-size", type=int, default=128, help="The paper's code uses 128.")
    parser.add_argument("--eval-every", type=int, default=250,
                        help="Log eval/* (code accuracy on the test set) every N steps; 0 turns it off.")
    parser.add_argument("--runs-root", default="runs/infogan-seeds")
    parser.add_argument("--reuse", action="append", default=[], metavar="SEED=RUN",
                        help="Use an existing finished run (same config) for a seed.")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--eval-only", action="store_true", help="Only evaluate runs that exist.")
    args = parser.parse_args()
    try:
        if not categorical_codes(build_model(args.model)):
            parser.error(f"--model {args.model}: the model has no categorical codes it can infer (HasCodes)")
    except ConfigError as error:
        parser.error(str(error))
    reuse = {int(k): Path(v) for k, v in (item.split("=", 1) for item in args.reuse)}
    rows = []
    for seed in args.seeds:
        run_dir = reuse.get(seed, Path(args.runs_root) / f"{args.model}-seed{seed}")
        if not args.eval_only:
            train_or_reuse(run_dir, {"model": args.model, "dataset": "mnist", "data_root": args.data_root,
                                     "steps": args.steps, "seed": seed,
                                     "batch_size": args.batch_size, "eval_every": args.eval_every}, {})
        report = evaluate_and_write(run_dir, args.data_root, num_samples=args.samples,
                                    metrics=["categorical_accuracy", "category_purity", "fid", "mode_coverage"])
        r = report["results"]
        config = runs.read_json(run_dir / "config.json")["train"]
        rows.append({"seed": seed, "run": str(run_dir), "steps": report["step"], "batch_size": config["batch_size"],
                     "cat_acc": r["categorical_accuracy"]["cat_acc"], "purity": r["category_purity"]["purity_mean"],
                     "distinct_classes": r["category_purity"]["distinct_majority_classes"],
                     "fid": r["fid"]["fid"], "fid_floor": r["fid"]["fid_floor"],
                     "classes_covered": r["mode_coverage"]["classes_covered"]})
        print(json.dumps(rows[-1]), flush=True)
    accuracies = [row["cat_acc"] for row in rows]
    mean, std = mean_std(accuracies)
    lines = ["| seed | steps | categorical-code accuracy (test, Hungarian) | error | purity of G(z, c) | judge FID |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['seed']} | {row['steps']} | {row['cat_acc']:.2%} | {1 - row['cat_acc']:.2%} | "
                     f"{row['purity']:.2%} | {row['fid']:.2f} |")
    lines.append(f"| mean ± std | | {mean:.2%} ± {std:.2%} | {1 - mean:.2%} | | |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.runs_root)
    runs.atomic_write_json(out / "infogan_seeds.json", {"rows": rows, "mean": mean, "std": std,
                                                        "best": max(accuracies)})
    runs.atomic_write_bytes(out / "infogan_seeds.md", (table + "\n").encode())


if __name__ == "__main__":
    main()
