"""Sample quality of every model, through `model.sample(n, rng)`: the judge's classifier-FID, KID,
precision/recall and class coverage on judged data (MNIST, Fashion-MNIST, emoji64), Inception FID on
RGB data, and the judge's class accuracy of a class-conditional model's `sample(n, rng, y=labels)`.

Counts: generated images are compared with up to num_samples test images, the floor with as many train
images as were generated (see `EvalContext.generated_count`); `fid` reports the three counts."""
from __future__ import annotations

import torch

from .distances import (class_histogram, fid_from_features, kernel_inception_distance, kl_to_uniform,
                        precision_recall)
from .features import inception_features, load_inception, to_uint8
from ..judge import confident_share
from .registry import EvalContext, register_metric


def judged(context: EvalContext) -> bool:
    """Any model, on data the judge reads."""
    return context.has_judge


@register_metric("fid", judged, "Classifier-FID (Heusel 2017 eq. 6) on the judge's features, with the "
                 "train-vs-test floor.", cost="low", quick=True, log_keys={"fid": "eval/fid"})
def metric_fid(context: EvalContext) -> dict:
    real, fake, train = context.real_judged("test")[0], context.fake_judged()[0], context.real_judged("train")[0]
    return {"fid": fid_from_features(fake, real), "fid_floor": fid_from_features(train, real),
            "generated_images": len(fake), "test_images": len(real), "floor_train_images": len(train)}


@register_metric("kid", judged, "KID (x1000, Binkowski 2018) on the judge's features, with the "
                 "train-vs-test floor.", cost="medium", quick=True, log_keys={"kid_x1000": "eval/kid_x1000"})
def metric_kid(context: EvalContext) -> dict:
    real = context.real_judged("test")[0]
    kid, kid_std = kernel_inception_distance(context.fake_judged()[0], real, seed=context.seed)
    floor, floor_std = kernel_inception_distance(context.real_judged("train")[0], real, seed=context.seed)
    return {"kid_x1000": 1000 * kid, "kid_x1000_std": 1000 * kid_std,
            "kid_x1000_floor": 1000 * floor, "kid_x1000_floor_std": 1000 * floor_std}


@register_metric("precision_recall", judged, "Precision and recall (Kynkaanniemi 2019, k=3) on the judge's "
                 "features, with the floor.", cost="medium", quick=True,
                 log_keys={"precision": "eval/precision", "recall": "eval/recall"})
def metric_precision_recall(context: EvalContext) -> dict:
    real = context.real_judged("test")[0]
    precision, recall = precision_recall(real, context.fake_judged()[0], k=3)
    floor_p, floor_r = precision_recall(real, context.real_judged("train")[0], k=3)
    return {"precision": precision, "recall": recall, "precision_floor": floor_p, "recall_floor": floor_r}


@register_metric("mode_coverage", judged, "The judge's class histogram of samples: classes covered "
                 "(>= 1% each), KL to uniform, and the share read with confidence > 0.9 (real test images "
                 "beside it).", cost="low", quick=True,
                 log_keys={"classes_covered": "eval/coverage", "kl_to_uniform": "eval/kl_uniform",
                           "confident_share": "eval/confident"})
def metric_mode_coverage(context: EvalContext, min_share: float = 0.01) -> dict:
    logits = context.fake_judged()[1]                                                # (N, classes)
    histogram = class_histogram(logits.argmax(1), context.judge_classes)
    return {"classes_covered": int((histogram >= min_share).sum()), "kl_to_uniform": kl_to_uniform(histogram),
            "class_histogram": [round(v, 4) for v in histogram.tolist()],
            "confident_share": confident_share(logits),
            "confident_share_real": confident_share(context.real_judged("test")[1])}


@register_metric("judge_accuracy", lambda c: c.judge_reads_classes,
                 "Class-conditional models: the judge's accuracy on sample(n, rng, y=labels) against the labels.",
                 cost="low", quick=True, log_keys={"judge_accuracy": "eval/judge_acc"})
def metric_judge_accuracy(context: EvalContext) -> dict:
    labels, _ = context.samples()
    predicted = context.fake_judged()[1].argmax(1)
    return {"judge_accuracy": (predicted == labels).float().mean().item()}


def inception_fid(real_uint8: torch.Tensor, fake_uint8: torch.Tensor, weights=None) -> float:
    """Heusel 2017 FID on Inception-v3 pool features of two uint8 RGB image sets."""
    network = load_inception(weights)
    return fid_from_features(inception_features(network, real_uint8), inception_features(network, fake_uint8))


@register_metric("inception_fid", lambda c: c.image_shape is not None and c.image_shape[0] == 3,
                 "RGB data: Inception FID through torch-fidelity, when the library and weights are available.",
                 cost="high")
def metric_inception_fid(context: EvalContext) -> dict:
    _, fake = context.samples()
    real = context.test_images[:context.num_samples]
    return {"inception_fid": inception_fid(real, to_uint8(fake), weights=context.inception_weights)}
