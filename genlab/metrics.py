"""Measured quality: the math of each metric, and a plain dict registry of model-level metrics.

Math (features are rows of a (N, D) tensor):
  frechet_distance      Heusel 2017 eq. 6: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))
  kernel_inception_distance   Binkowski 2018: unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3
  precision_recall      Kynkaanniemi 2019: k-NN hyperspheres of each set, k = 3
  class_histogram / kl_to_uniform / hungarian_accuracy / importance_weighted_bound

Registry: `METRICS[name] = Metric(fn, applies)`, where `fn(context) -> dict of numbers` and
`applies(context) -> bool`. `evaluate(context, names)` runs them. The context holds the model,
the frozen judge, the real data and caches (features of real and generated images).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

# ---------------------------------------------------------------- the math


def mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Heusel 2017 eq. 6, Frechet distance of two Gaussians: |m1-m2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    tr((C1 C2)^(1/2)) = tr((C1^(1/2) C2 C1^(1/2))^(1/2)): the inner matrix is symmetric PSD, so its
    eigenvalues are real and >= 0 (up to rounding, clamped), which avoids sqrtm's complex parts.
    """
    mean1, cov1, mean2, cov2 = (t.double() for t in (mean1, cov1, mean2, cov2))
    root1 = psd_sqrt(cov1)
    inner = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    value = (mean1 - mean2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_sqrt
    return max(value.item(), 0.0)


def fid_from_features(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*mean_cov(features1), *mean_cov(features2))


def kernel_inception_distance(features1: torch.Tensor, features2: torch.Tensor, subsets: int = 50,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Binkowski 2018: unbiased MMD^2 with the cubic polynomial kernel, mean and std over random subsets."""
    x_all, y_all = features1.double(), features2.double()
    dim = x_all.shape[1]
    m = min(subset_size, len(x_all), len(y_all))
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = x_all[torch.randperm(len(x_all), generator=generator)[:m]]            # (m, D)
        y = y_all[torch.randperm(len(y_all), generator=generator)[:m]]            # (m, D)
        k_xx, k_yy = (x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        off_diagonal = m * (m - 1)
        mmd = ((k_xx.sum() - k_xx.diagonal().sum()) / off_diagonal
               + (k_yy.sum() - k_yy.diagonal().sum()) / off_diagonal - 2 * k_xy.mean())
        values.append(mmd.item())
    values = torch.tensor(values)
    return values.mean().item(), (values.std().item() if subsets > 1 else 0.0)


def kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point (N, D) to its k-th nearest other point of the same set, shape (N,)."""
    radii = []
    for start in range(0, len(features), chunk):
        distances = torch.cdist(features[start:start + chunk], features)         # (chunk, N)
        radii.append(distances.kthvalue(k + 1, dim=1).values)                     # +1: the point itself
    return torch.cat(radii)


def fraction_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> float:
    """Fraction of queries (M, D) inside at least one hypersphere (centres (N, D), radii (N,))."""
    inside = []
    for start in range(0, len(queries), chunk):
        distances = torch.cdist(queries[start:start + chunk], centres)            # (chunk, N)
        inside.append((distances <= radii[None]).any(1))
    return torch.cat(inside).float().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi 2019 eq. 1-2: precision = share of fakes on the real manifold, recall = the reverse."""
    real, fake = real.float(), fake.float()
    precision = fraction_inside(fake, real, kth_neighbour_radii(real, k))
    recall = fraction_inside(real, fake, kth_neighbour_radii(fake, k))
    return precision, recall


def class_histogram(labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Share of each class among predicted labels (N,), shape (num_classes,)."""
    return torch.bincount(labels.long(), minlength=num_classes).double() / max(len(labels), 1)


def kl_to_uniform(histogram: torch.Tensor) -> float:
    """KL(p || uniform) = log K - H(p), in nats; 0 for a perfectly balanced histogram."""
    p = histogram.double()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return math.log(len(p)) - entropy.item()


def hungarian_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict]:
    """Accuracy of cluster ids under the best one-to-one matching to labels (Kuhn 1955, via scipy)."""
    from scipy.optimize import linear_sum_assignment
    n_pred, n_true = int(predicted.max()) + 1, int(labels.max()) + 1
    size = max(n_pred, n_true)
    counts = torch.zeros(size, size, dtype=torch.long)
    counts.index_put_((predicted.long(), labels.long()), torch.ones(len(labels), dtype=torch.long), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    matched = counts[rows, cols].sum().item()
    return matched / len(labels), {int(r): int(c) for r, c in zip(rows, cols)}


def importance_weighted_bound(model, x01: torch.Tensor, k: int, chunk: int = 250,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Burda 2015 eq. 8 in nats per image, (B,): minus the model's `nll` (see `VAE.nll`)."""
    return -model.nll(x01, generator, k=k, chunk=chunk)


# ---------------------------------------------------------------- the registry


@dataclass
class Metric:
    """A registered metric: fn(context) -> dict of numbers; applies(context) says if it fits the model/data."""
    fn: Callable[["EvalContext"], dict]
    applies: Callable[["EvalContext"], bool]
    help: str


METRICS: dict[str, Metric] = {}


def register_metric(name: str, applies: Callable[["EvalContext"], bool], help: str):
    """Register `fn(context) -> dict` under `name` in the one plain dict of metrics."""
    def decorate(fn):
        METRICS[name] = Metric(fn, applies, help)
        return fn
    return decorate


@dataclass
class EvalContext:
    """What the metrics need: the model, the judge, the real data; caches what several metrics share."""
    model: object
    train_images: torch.Tensor | None = None        # (N, C, H, W) uint8
    test_images: torch.Tensor | None = None         # (N, C, H, W) uint8
    test_labels: torch.Tensor | None = None         # (N,)
    judge: object = None
    num_samples: int = 10000
    seed: int = 0
    iwae_k: int = 1000
    iwae_images: int = 1000
    elbo_images: int | None = None                  # None: the whole test set
    inception_weights: str | None = None
    batch_size: int = 500
    cache: dict = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return getattr(self.model, "name", "")

    @property
    def is_mnist_like(self) -> bool:
        return self.test_images is not None and tuple(self.test_images.shape[1:]) == (1, 28, 28)

    @property
    def has_judge(self) -> bool:
        return self.judge is not None and self.is_mnist_like

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(self.model.device).manual_seed(self.seed + offset)

    @torch.no_grad()
    def generate(self, latents: dict) -> torch.Tensor:
        """G(latents) in batches, as float images (N, C, H, W) in [-1, 1] on the CPU."""
        n = len(next(iter(latents.values())))
        out = []
        for start in range(0, n, self.batch_size):
            out.append(self.model.generate(**{k: v[start:start + self.batch_size] for k, v in latents.items()})
                       .float().clamp(-1, 1).cpu())
        return torch.cat(out)

    def samples(self) -> tuple[dict, torch.Tensor]:
        """num_samples latents from the prior and their images, drawn once per context."""
        if "samples" not in self.cache:
            latents = self.model.sample_latents(self.num_samples, self.generator())
            self.cache["samples"] = (latents, self.generate(latents))
        return self.cache["samples"]

    def judged(self, key: str, images_fn) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of the judge on a set of images, computed once per key."""
        from .judge import judge_outputs
        if key not in self.cache:
            self.cache[key] = judge_outputs(self.judge, images_fn())
        return self.cache[key]

    def fake_judged(self):
        return self.judged("fake", lambda: self.samples()[1])

    def real_judged(self, split: str):
        """Judge outputs on up to num_samples real images of a split ('train' or 'test')."""
        images = self.train_images if split == "train" else self.test_images
        return self.judged(split, lambda: images[:self.num_samples])


def is_generator(context: EvalContext) -> bool:
    return hasattr(context.model, "generate")


def judged_generator(context: EvalContext) -> bool:
    return context.has_judge and is_generator(context)


@register_metric("fid", judged_generator, "Classifier-FID on the judge's features, with the train-vs-test floor.")
def metric_fid(context: EvalContext) -> dict:
    real = context.real_judged("test")[0]
    return {"fid": fid_from_features(context.fake_judged()[0], real),
            "fid_floor": fid_from_features(context.real_judged("train")[0], real)}


@register_metric("kid", judged_generator, "KID (x1000) on the judge's features, with the train-vs-test floor.")
def metric_kid(context: EvalContext) -> dict:
    real = context.real_judged("test")[0]
    kid, kid_std = kernel_inception_distance(context.fake_judged()[0], real, seed=context.seed)
    floor, floor_std = kernel_inception_distance(context.real_judged("train")[0], real, seed=context.seed)
    return {"kid_x1000": 1000 * kid, "kid_x1000_std": 1000 * kid_std,
            "kid_x1000_floor": 1000 * floor, "kid_x1000_floor_std": 1000 * floor_std}


@register_metric("precision_recall", judged_generator,
                 "Precision and recall (Kynkaanniemi 2019, k=3) on the judge's features, with the floor.")
def metric_precision_recall(context: EvalContext) -> dict:
    real = context.real_judged("test")[0]
    precision, recall = precision_recall(real, context.fake_judged()[0], k=3)
    floor_p, floor_r = precision_recall(real, context.real_judged("train")[0], k=3)
    return {"precision": precision, "recall": recall, "precision_floor": floor_p, "recall_floor": floor_r}


@register_metric("mode_coverage", judged_generator,
                 "The judge's class histogram of samples: classes covered (>= 1% each) and KL to uniform.")
def metric_mode_coverage(context: EvalContext, min_share: float = 0.01) -> dict:
    histogram = class_histogram(context.fake_judged()[1].argmax(1), 10)
    return {"classes_covered": int((histogram >= min_share).sum()), "kl_to_uniform": kl_to_uniform(histogram),
            "class_histogram": [round(v, 4) for v in histogram.tolist()]}


@register_metric("judge_accuracy", lambda c: judged_generator(c) and c.model_name == "cgan",
                 "cGAN: the judge's accuracy on G(z, y) against y.")
def metric_judge_accuracy(context: EvalContext) -> dict:
    latents, _ = context.samples()
    predicted = context.fake_judged()[1].argmax(1)
    return {"judge_accuracy": (predicted == latents["y"].cpu()).float().mean().item()}


def infogan_with_categories(context: EvalContext) -> bool:
    return context.model_name == "infogan" and bool(context.model.latent_spec().categorical)


@register_metric("categorical_accuracy",
                 lambda c: infogan_with_categories(c) and c.test_labels is not None,
                 "InfoGAN: argmax Q(c|x) on the test set as a classifier, Hungarian-matched to the labels.")
@torch.no_grad()
def metric_categorical_accuracy(context: EvalContext) -> dict:
    images = context.test_images
    predicted = []
    for start in range(0, len(images), context.batch_size):
        x = images[start:start + context.batch_size].to(context.model.device).float() / 127.5 - 1
        predicted.append(context.model.infer_codes(x)["cat"][:, 0].cpu())         # first categorical code
    accuracy, matching = hungarian_accuracy(torch.cat(predicted), context.test_labels)
    return {"cat_acc": accuracy, "cat_error": 1 - accuracy, "cat_matching": matching}


@register_metric("category_purity", lambda c: infogan_with_categories(c) and c.has_judge,
                 "InfoGAN: for each value of the first categorical code, the share of G(z, c) in its majority judge class.")
def metric_category_purity(context: EvalContext) -> dict:
    latents, _ = context.samples()
    category = latents["cat"][:, 0].cpu()
    predicted = context.fake_judged()[1].argmax(1)
    purities, majority = [], []
    for value in range(context.model.latent_spec().categorical[0]):
        labels = predicted[category == value]
        if len(labels) == 0:
            continue
        counts = torch.bincount(labels, minlength=10)
        purities.append(counts.max().item() / len(labels))
        majority.append(int(counts.argmax()))
    return {"purity_mean": sum(purities) / len(purities), "purity_per_category": [round(p, 4) for p in purities],
            "majority_class_per_category": majority, "distinct_majority_classes": len(set(majority))}


def is_vae(context: EvalContext) -> bool:
    return context.model_name == "vae" and context.test_images is not None


def binarized_test(context: EvalContext, count: int | None) -> torch.Tensor:
    """The first `count` test images as x in [0, 1]; for a Bernoulli VAE, one fixed binarization (seed 0)."""
    x01 = context.test_images[:count].float() / 255
    if context.model.config.likelihood == "bernoulli":
        x01 = torch.bernoulli(x01, generator=torch.Generator().manual_seed(0))
    return x01


@register_metric("elbo", is_vae, "VAE: the test ELBO in nats per image (one sample per image).")
@torch.no_grad()
def metric_elbo(context: EvalContext) -> dict:
    x01 = binarized_test(context, context.elbo_images)
    generator = context.generator(7)
    values = []
    for start in range(0, len(x01), context.batch_size):
        values.append(importance_weighted_bound(context.model, x01[start:start + context.batch_size]
                                                .to(context.model.device), k=1, generator=generator).cpu())
    values = torch.cat(values)
    return {"elbo": values.mean().item(), "elbo_images": len(values)}


@register_metric("iwae", is_vae, "VAE: the importance-weighted bound on log p(x) (Burda 2015), k samples, in nats.")
@torch.no_grad()
def metric_iwae(context: EvalContext) -> dict:
    x01 = binarized_test(context, context.iwae_images)
    generator = context.generator(11)
    started, values = time.time(), []
    per_batch = max(1, 20000 // max(context.iwae_k, 1)) if context.iwae_k > 250 else 100
    for start in range(0, len(x01), per_batch):
        values.append(importance_weighted_bound(context.model, x01[start:start + per_batch].to(context.model.device),
                                                k=context.iwae_k, generator=generator).cpu())
    values = torch.cat(values)
    return {"iwae_log_px": values.mean().item(), "nll": -values.mean().item(),
            "nll_stderr": (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else 0.0,
            "iwae_k": context.iwae_k, "iwae_images": len(values), "iwae_seconds": round(time.time() - started, 1)}


@register_metric("inception_fid", lambda c: is_generator(c) and c.test_images is not None
                 and c.test_images.shape[1] == 3,
                 "RGB data: Inception FID through torchmetrics or torch-fidelity, when the weights are available.")
def metric_inception_fid(context: EvalContext) -> dict:
    from .inception import inception_fid
    _, fake = context.samples()
    real = context.test_images[:context.num_samples]
    return {"inception_fid": inception_fid(real, ((fake + 1) * 127.5).round().to(torch.uint8),
                                           weights=context.inception_weights)}


def evaluate(context: EvalContext, names: list[str] | None = None) -> dict:
    """Run the named metrics (default: all that apply) -> {name: {values}, ...}, with timings."""
    chosen = list(names) if names is not None else [n for n, m in METRICS.items() if m.applies(context)]
    unknown = [name for name in chosen if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    results = {}
    was_training = getattr(context.model, "training", False)
    context.model.eval()
    try:
        for name in chosen:
            if not METRICS[name].applies(context):
                raise ValueError(f"metric {name!r} does not apply to this model/data: {METRICS[name].help}")
            started = time.time()
            results[name] = dict(METRICS[name].fn(context), seconds=round(time.time() - started, 2))
    finally:
        context.model.train(was_training)
    return results


__all__ = ["METRICS", "Metric", "register_metric", "EvalContext", "evaluate", "frechet_distance",
           "fid_from_features", "kernel_inception_distance", "precision_recall", "class_histogram",
           "kl_to_uniform", "hungarian_accuracy", "importance_weighted_bound"]
