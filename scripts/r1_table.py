"""DCGAN on MNIST with the R1 penalty (Mescheder 2018) at several gamma: judge FID, coverage,
recall and whether training stayed stable. Every run has the same steps, seed and discriminator
(per-sample LayerNorm, `d_norm=layer`, so that only gamma changes; BatchNorm would mix the
per-sample gradients R1 penalizes).

    python scripts/r1_table.py --data-root ../shared/data --gammas 0 10 1 0.1 0.01 --steps 500

`--model` takes any registered model whose config has an `r1_gamma` field (default dcgan).

Stable means: no loss became NaN/inf, and the judge FID measured every `--eval-every` steps did
not end more than 50% above its best value of the run (no late collapse).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from scripts.experiments import evaluate_and_write, train_or_reuse

from genlab import runs
from genlab.config import ConfigError
from genlab.models import get_model_class


def stability(run_dir: Path) -> dict:
    """Did the run finish without diverging, and did its FID curve (eval/fid) end near its best?"""
    status = runs.read_status(run_dir)
    curve = [(line["step"], line["eval/fid"]) for line in runs.read_metrics(run_dir) if "eval/fid" in line]
    best = min(fid for _, fid in curve) if curve else None
    last = curve[-1][1] if curve else None
    finished = status.get("state") == "finished"
    stable = finished and (last is None or last <= 1.5 * best)            # no curve: judged on divergence only
    return {"state": status.get("state"), "error": status.get("error"), "fid_curve": curve,
            "best_quick_fid": best, "last_quick_fid": last, "stable": stable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--model", default="dcgan", help="A registered model with an r1_gamma config field.")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0, 10, 1, 0.1, 0.01])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--d-norm", default="layer", choices=("layer", "none", "batch"))
    parser.add_argument("--runs-root", default="runs/r1-table")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--eval-only", action="store_true", help="Only evaluate runs that exist.")
    args = parser.parse_args()
    try:
        fields = {f.name for f in dataclasses.fields(get_model_class(args.model).config_class)}
    except ConfigError as error:
        parser.error(str(error))
    if not {"r1_gamma", "d_norm"} <= fields:
        parser.error(f"--model {args.model}: its config has no r1_gamma / d_norm fields")
    run_dirs = {gamma: Path(args.runs_root) / f"{args.model}-r1-{gamma:g}" for gamma in args.gammas}
    for gamma, run_dir in run_dirs.items():              # train all first, then evaluate all
        if args.eval_only:
            break
        try:
            train_or_reuse(run_dir, {"model": args.model, "dataset": "mnist", "data_root": args.data_root,
                                     "steps": args.steps, "seed": args.seed, "eval_every": args.eval_every},
                           {"r1_gamma": gamma, "d_norm": args.d_norm})
        except Exception as error:                      # a diverged run is a result of the table, not a crash
            print(f"gamma {gamma:g}: training failed: {error}", flush=True)
    rows = []
    for gamma, run_dir in run_dirs.items():
        if not (run_dir / "config.json").exists():
            continue
        row = {"gamma": gamma, "run": str(run_dir), **stability(run_dir)}
        if (run_dir / "checkpoints" / "latest.safetensors").exists():
            report = evaluate_and_write(run_dir, args.data_root, num_samples=args.samples,
                                        metrics=["fid", "kid", "precision_recall", "mode_coverage"])
            r = report["results"]
            row.update(step=report["step"], fid=r["fid"]["fid"], fid_floor=r["fid"]["fid_floor"],
                       kid_x1000=r["kid"]["kid_x1000"], precision=r["precision_recall"]["precision"],
                       recall=r["precision_recall"]["recall"], classes_covered=r["mode_coverage"]["classes_covered"],
                       kl_to_uniform=r["mode_coverage"]["kl_to_uniform"])
        print(json.dumps({k: v for k, v in row.items() if k != "fid_curve"}), flush=True)
        rows.append(row)
    lines = ["| R1 gamma | steps | judge FID (floor) | KID x1000 | precision | recall | classes covered | "
             "KL to uniform | stable (quick FID best → last) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "fid" not in row:
            lines.append(f"| {row['gamma']:g} | - | - | - | - | - | - | - | no: {row['state']} ({row['error']}) |")
            continue
        lines.append(f"| {row['gamma']:g} | {row['step']} | {row['fid']:.2f} ({row['fid_floor']:.2f}) | "
                     f"{row['kid_x1000']:.2f} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['classes_covered']}/10 | {row['kl_to_uniform']:.4f} | "
                     f"{'yes' if row['stable'] else 'no'} "
                     + (f"({row['best_quick_fid']:.1f} → {row['last_quick_fid']:.1f}) |" if row["fid_curve"]
                        else "(no NaN; no FID curve recorded) |"))
    table = "\n".join(lines)
    print(table)
    out = Path(args.runs_root)
    runs.atomic_write_json(out / "r1_table.json", {"rows": rows, "steps": args.steps, "d_norm": args.d_norm})
    runs.atomic_write_bytes(out / "r1_table.md", (table + "\n").encode())


if __name__ == "__main__":
    main()
