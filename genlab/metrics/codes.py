"""Codes of models that infer them (HasCodes) and declare categorical ones (as InfoGAN does): the
first categorical code as an unsupervised classifier of the test set (Hungarian-matched accuracy),
and the judge's purity of each code value among generated images."""
from __future__ import annotations

import torch

from ..models.base import sample_prior
from .distances import hungarian_accuracy
from .features import judge_outputs
from .registry import EvalContext, categorical_codes, register_metric


@register_metric("categorical_accuracy",
                 lambda c: c.test_labels is not None and c.infers_codes,
                 "Models with categorical codes: argmax of infer_codes(x) on the test set as a classifier, "
                 "Hungarian-matched to the labels.", cost="low", quick=True, log_keys={"cat_acc": "eval/cat_acc"})
@torch.no_grad()
def metric_categorical_accuracy(context: EvalContext) -> dict:
    images = context.test_images
    predicted = []
    for start in range(0, len(images), context.batch_size):
        x = images[start:start + context.batch_size].to(context.model.device).float() / 127.5 - 1
        predicted.append(context.model.infer_codes(x)["cat"][:, 0].cpu())         # first categorical code
    accuracy, matching = hungarian_accuracy(torch.cat(predicted), context.test_labels)
    return {"cat_acc": accuracy, "cat_error": 1 - accuracy, "cat_matching": matching}


@register_metric("category_purity", lambda c: bool(categorical_codes(c.model)) and c.has_judge,
                 "Models with categorical codes: for each value of the first code, the share of "
                 "generate(z, c) in its majority judge class.", cost="low", quick=True,
                 log_keys={"purity_mean": "eval/purity"})
@torch.no_grad()
def metric_category_purity(context: EvalContext) -> dict:
    model = context.model
    spec = model.latent_spec()
    latents = sample_prior(spec, context.num_samples, context.generator(5), model.device)
    category = latents["cat"][:, 0].cpu()
    images = torch.cat([model.generate(**{k: v[start:start + context.batch_size] for k, v in latents.items()})
                        .float().clamp(-1, 1).cpu() for start in range(0, context.num_samples, context.batch_size)])
    predicted = judge_outputs(context.judge, images)[1].argmax(1)
    purities, majority = [], []
    for value in range(spec.categorical[0]):
        labels = predicted[category == value]
        if len(labels) == 0:
            continue
        counts = torch.bincount(labels, minlength=context.judge_classes)
        purities.append(counts.max().item() / len(labels))
        majority.append(int(counts.argmax()))
    return {"purity_mean": sum(purities) / len(purities), "purity_per_category": [round(p, 4) for p in purities],
            "majority_class_per_category": majority, "distinct_majority_classes": len(set(majority))}
