"""Shared by the table scripts: train a run unless it is already finished, then evaluate it."""
from __future__ import annotations

from pathlib import Path


from genlab import runs                                 
from genlab.eval import evaluate_checkpoint, markdown_report, output_paths 
from genlab import make_config, resume, train       # builds the evaluator when eval_every > 0  


def train_or_reuse(run_dir: Path, train_config: dict, model_config: dict) -> dict:
    """Train into run_dir; a finished run of `steps` is reused, a shorter or interrupted one resumed to `steps`."""
    status = runs.read_status(run_dir) if (run_dir / "config.json").exists() else None
    if status and status.get("state") == "finished" and status.get("step", 0) >= train_config["steps"]:
        return status
    if status:
        return resume(run_dir, steps=train_config["steps"])
    return train(make_config(train_config, model_config), run_dir)


def evaluate_and_write(run_dir: Path, data_root: str, **options) -> dict:
    """evaluate_checkpoint on a run, writing RUN/eval.json and RUN/eval.md."""
    report = evaluate_checkpoint(run_dir, data_root=data_root, **options)
    json_path, md_path = output_paths(run_dir, None)
    runs.atomic_write_json(json_path, report)
    runs.atomic_write_bytes(md_path, markdown_report(report).encode())
    return report


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
