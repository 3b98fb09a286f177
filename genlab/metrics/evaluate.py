"""Running metrics: those that apply to a context (by capability), all of them or the quick ones."""
from __future__ import annotations

import time

from .registry import METRICS, EvalContext


def applicable(context: EvalContext, quick: bool | None = None) -> list[str]:
    """Names of the registered metrics that apply to this model and data; quick=True: only those the
    training loop runs, quick=False: only the others."""
    return [name for name, metric in METRICS.items()
            if (quick is None or metric.quick == quick) and metric.applies(context)]


def evaluate(context: EvalContext, names: list[str] | None = None) -> dict:
    """Run the named metrics (default: all that apply) -> {name: {values..., seconds}}."""
    chosen = list(names) if names is not None else applicable(context)
    unknown = [name for name in chosen if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    for name in chosen:
        if not METRICS[name].applies(context):
            raise ValueError(f"metric {name!r} does not apply to this model/data: {METRICS[name].help}")
    results = {}
    was_training = getattr(context.model, "training", False)
    context.model.eval()
    try:
        for name in chosen:
            started = time.time()
            results[name] = dict(METRICS[name].fn(context), seconds=round(time.time() - started, 2))
    finally:
        context.model.train(was_training)
    return results


def quick_log(context: EvalContext) -> dict[str, float]:
    """The quick metrics that apply, as the flat {"eval/...": number} the training loop logs."""
    results = evaluate(context, applicable(context, quick=True))
    return {label: float(results[name][key]) for name in results
            for key, label in METRICS[name].log_keys.items() if key in results[name]}


def quick_log_keys() -> dict[str, str]:
    """Every "eval/..." key a quick metric may log -> the metric's help (for plots and docs)."""
    return {label: metric.help for metric in METRICS.values() if metric.quick for label in metric.log_keys.values()}
