"""Likelihood of anything with `nll` (HasLikelihood): the test set's negative log-likelihood in nats
per image and in bits per dimension, bounded by the ELBO (k = 1) and the importance-weighted bound
(Burda 2015 eq. 8) with k samples; both come from `model.nll(x01, rng, k)`.

bits/dim = nats / (C * H * W * ln 2), as the model scores x01: exact for binary pixels; for a density
over x in [0, 1] it is that density's value (a discrete 8-bit comparison would add log2(256) = 8 and
needs dequantized data)."""
from __future__ import annotations

import math
import time

import torch

from ..models import HasLikelihood
from .distances import bits_per_dim
from .registry import EvalContext, register_metric


def has_likelihood(context: EvalContext) -> bool:
    return isinstance(context.model, HasLikelihood) and context.test_images is not None


def binarizes(model) -> bool:
    """A model whose likelihood is over binary pixels (Bernoulli): it is scored on binarized images."""
    return getattr(model.config, "likelihood", None) == "bernoulli"


def test_x01(context: EvalContext, count: int | None, binarize_seed: int = 0) -> torch.Tensor:
    """The first `count` test images as x in [0, 1]; binary pixels (one fixed draw, `binarize_seed`) where
    the model's likelihood is over binary pixels."""
    x01 = context.test_images[:count].float() / 255
    if binarizes(context.model):
        x01 = torch.bernoulli(x01, generator=torch.Generator().manual_seed(binarize_seed))
    return x01


@torch.no_grad()
def nll_per_image(context: EvalContext, x01: torch.Tensor, k: int, per_batch: int, offset: int) -> torch.Tensor:
    """model.nll over x01 (N, C, H, W) in batches: nats per image, (N,) on the CPU."""
    rng = context.generator(offset)
    values = [context.model.nll(x01[start:start + per_batch].to(context.model.device), rng, k=k).cpu()
              for start in range(0, len(x01), per_batch)]
    return torch.cat(values).double()


def summary(nats: torch.Tensor, dims: int) -> dict:
    """Mean NLL in nats per image and bits per dimension, with the standard error of the mean."""
    mean = nats.mean().item()
    stderr = (nats.std() / math.sqrt(len(nats))).item() if len(nats) > 1 else 0.0
    return {"nll": mean, "nll_stderr": stderr, "bits_per_dim": bits_per_dim(mean, dims)}


@register_metric("elbo", has_likelihood, "Likelihood models: the test ELBO (model.nll with k = 1), in nats per "
                 "image and bits/dim.", cost="low", quick=True,
                 log_keys={"elbo": "eval/elbo", "bits_per_dim": "eval/elbo_bits_per_dim"})
def metric_elbo(context: EvalContext) -> dict:
    x01 = test_x01(context, context.elbo_images, context.binarize_seeds[0])
    nats = nll_per_image(context, x01, k=1, per_batch=context.batch_size, offset=7)
    values = summary(nats, x01[0].numel())
    return {"elbo": -values["nll"], **values, "elbo_images": len(nats)}


@register_metric("iwae", has_likelihood, "Likelihood models: the importance-weighted bound on -log p(x) "
                 "(Burda 2015 eq. 8, model.nll with k samples), in nats per image and bits/dim; averaged over "
                 "the binarizations of the test set asked for (`binarize_seeds`), each one reported.", cost="high")
def metric_iwae(context: EvalContext) -> dict:
    started = time.time()
    per_batch = max(1, 20000 // max(context.iwae_k, 1)) if context.iwae_k > 250 else 100
    seeds = context.binarize_seeds if binarizes(context.model) else context.binarize_seeds[:1]
    draws = []
    for seed in seeds:
        x01 = test_x01(context, context.iwae_images, seed)
        draws.append(summary(nll_per_image(context, x01, k=context.iwae_k, per_batch=per_batch, offset=11),
                             x01[0].numel()))
    nll = sum(d["nll"] for d in draws) / len(draws)
    values = {"nll": nll, "nll_stderr": draws[0]["nll_stderr"], "bits_per_dim": bits_per_dim(nll, x01[0].numel())}
    if len(draws) > 1:
        values.update(binarize_seeds=list(seeds), nll_by_binarization=[d["nll"] for d in draws],
                      binarization_spread=max(d["nll"] for d in draws) - min(d["nll"] for d in draws))
    return {"iwae_log_px": -nll, **values, "iwae_k": context.iwae_k, "iwae_images": len(x01),
            "iwae_seconds": round(time.time() - started, 1)}
