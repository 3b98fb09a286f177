"""Measured quality, chosen by capability: a package of metrics in a plain dict registry.

  distances.py       the math: FID (Heusel 2017 eq. 6), KID, precision/recall, histograms, KL, Hungarian
  features.py        the feature extractors: the frozen judge of each data set (MNIST, Fashion-MNIST), Inception-v3
  registry.py        Metric, METRICS, register_metric, EvalContext (what a metric reads)
  sample_quality.py  fid, kid, precision_recall, mode_coverage, judge_accuracy, inception_fid
  likelihood.py      elbo, iwae: nats per image and bits/dim of anything with `nll`
  codes.py           categorical_accuracy, category_purity of models with categorical codes
  evaluate.py        evaluate(context, names), applicable(context, quick), quick_log(context)

A metric applies by what the model can do (`genlab.models` protocols, `has_classes`) and what the
data is, never by the model's name; quick metrics declare the "eval/..." keys the training loop logs.
"""
from .distances import (bits_per_dim, class_histogram, fid_from_features, frechet_distance, hungarian_accuracy,
                        kernel_inception_distance, kl_to_uniform, mean_cov, precision_recall)
from .registry import COSTS, METRICS, EvalContext, Metric, categorical_codes, register_metric
from . import sample_quality, likelihood, codes  # noqa: F401,E402  (each registers its metrics)
from .evaluate import applicable, evaluate, quick_log, quick_log_keys

__all__ = ["COSTS", "METRICS", "Metric", "register_metric", "EvalContext", "categorical_codes", "applicable",
           "evaluate", "quick_log", "quick_log_keys", "frechet_distance", "fid_from_features", "mean_cov",
           "kernel_inception_distance", "precision_recall", "class_histogram", "kl_to_uniform",
           "hungarian_accuracy", "bits_per_dim"]
