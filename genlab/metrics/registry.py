"""The registry of model-level metrics (one plain dict) and the context they read.

`METRICS[name] = Metric(...)`: `fn(context) -> dict of numbers`, `applies(context) -> bool` (chosen
by capability: the protocols of `genlab.models` and `has_classes`, never a model's name), whether
the training loop runs it (`quick`, with `log_keys` naming its numbers in metrics.jsonl) and its
`cost`. The context holds the model, the frozen judge, the real data and caches of what several
metrics share (real features across evaluations, generated samples within one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..checkpoint import CheckpointError
from ..models import HasCodes, HasLatents, has_classes
from .features import judge_fits, judge_outputs

COSTS = ("low", "medium", "high")   # low: one pass of model and judge over the samples; medium: all pairwise
#                                     feature distances or many kernel subsets; high: k model passes per
#                                     image or a 299-pixel Inception network


@dataclass(frozen=True)
class Metric:
    """A registered metric; see the module docstring."""
    name: str
    fn: Callable[["EvalContext"], dict]
    applies: Callable[["EvalContext"], bool]
    help: str
    cost: str = "low"
    quick: bool = False                                      # run by the training-time evaluator
    log_keys: dict = field(default_factory=dict)             # result key -> "eval/..." key of metrics.jsonl


METRICS: dict[str, Metric] = {}


def register_metric(name: str, applies: Callable[["EvalContext"], bool], help: str, cost: str = "low",
                    quick: bool = False, log_keys: dict | None = None):
    """Register `fn(context) -> dict` under `name` in the one plain dict of metrics."""
    if cost not in COSTS:
        raise ValueError(f"metric {name!r}: cost must be one of {COSTS}, got {cost!r}")
    if quick and not log_keys:
        raise ValueError(f"metric {name!r}: a quick metric names the keys it logs (log_keys)")

    def decorate(fn):
        METRICS[name] = Metric(name, fn, applies, help, cost, quick, dict(log_keys or {}))
        return fn
    return decorate


# ---------------------------------------------------------------- capabilities the metrics ask about
def categorical_codes(model) -> list[int]:
    """Sizes of the categorical codes of a model that infers codes (HasCodes) and declares them."""
    if isinstance(model, HasCodes) and isinstance(model, HasLatents):
        return list(model.latent_spec().categorical)
    return []


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
    binarize_seeds: tuple = (0,)                    # draws of the binarized test set (Bernoulli likelihoods)
    inception_weights: str | None = None
    batch_size: int = 500
    cache: dict = field(default_factory=dict)       # generated samples and their features: this evaluation
    real_cache: dict = field(default_factory=dict)  # features of real images: may be shared across evaluations
    skipped: dict = field(default_factory=dict)     # metric -> why it cannot run here, found by a probe

    @property
    def image_shape(self) -> tuple | None:
        return None if self.test_images is None else tuple(self.test_images.shape[1:])

    @property
    def has_judge(self) -> bool:
        return self.judge is not None and self.image_shape is not None and judge_fits(self.image_shape, self.judge)

    @property
    def judge_classes(self) -> int:
        """How many classes the judge tells apart (10 for MNIST and Fashion-MNIST, 9 emoji groups)."""
        return self.judge.num_classes

    @property
    def judge_reads_classes(self) -> bool:
        """The model's classes are the judge's classes (a class-conditional model of the judged data set)."""
        return self.has_judge and has_classes(self.model) and self.model.config.num_classes == self.judge_classes

    @property
    def generated_count(self) -> int:
        """How many samples the sample-quality metrics draw: num_samples, but never more than the train
        images the real-vs-real floor compares with (train[:num_samples] vs test[:num_samples]), so the
        model and its floor are measured with the same sample sizes (FID's bias depends on them). MNIST's
        60k train images leave 10k; emoji64's 1,320 make it 1,320 against all 330 test images."""
        if self.train_images is None:
            return self.num_samples
        return min(self.num_samples, len(self.train_images))

    @property
    def infers_codes(self) -> bool:
        """The model declares categorical codes and can infer them here: one test image is tried, since an
        inference-only export may have left out the network that infers them (probed once)."""
        if "infers_codes" not in self.cache:
            works = bool(categorical_codes(self.model)) and self.test_images is not None
            if works:
                was_training = self.model.training
                self.model.eval()
                try:
                    with torch.no_grad():
                        self.model.infer_codes(self.test_images[:1].to(self.model.device).float() / 127.5 - 1)
                except CheckpointError as error:
                    works = False
                    self.skipped["categorical_accuracy"] = str(error)
                finally:
                    self.model.train(was_training)
            self.cache["infers_codes"] = works
        return self.cache["infers_codes"]

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(self.model.device).manual_seed(self.seed + offset)

    @torch.no_grad()
    def draw(self, n: int, rng: torch.Generator, y: torch.Tensor | None = None) -> torch.Tensor:
        """`model.sample` in batches, as float images (n, C, H, W) in [-1, 1] on the CPU."""
        out = []
        for start in range(0, n, self.batch_size):
            size = min(self.batch_size, n - start)
            labels = None if y is None else y[start:start + size].to(self.model.device)
            out.append(self.model.sample(size, rng, y=labels).float().clamp(-1, 1).cpu())
        return torch.cat(out)

    def samples(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(classes asked for or None, images): generated_count through `model.sample`, drawn once per context.

        A class-conditional model is asked for uniformly random classes (as its prior draws them)."""
        if "samples" not in self.cache:
            labels = None
            if has_classes(self.model):
                labels = torch.randint(self.model.config.num_classes, (self.generated_count,),
                                       generator=torch.Generator().manual_seed(self.seed + 3))
            self.cache["samples"] = (labels, self.draw(self.generated_count, self.generator(), labels))
        return self.cache["samples"]

    def fake_judged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of the judge on the samples, computed once per context."""
        if "fake" not in self.cache:
            self.cache["fake"] = judge_outputs(self.judge, self.samples()[1])
        return self.cache["fake"]

    def real_judged(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Judge outputs on up to num_samples real images of a split ('train' or 'test'), computed once."""
        key = (split, self.num_samples)
        if key not in self.real_cache:
            images = self.train_images if split == "train" else self.test_images
            self.real_cache[key] = judge_outputs(self.judge, images[:self.num_samples])
        return self.real_cache[key]


__all__ = ["COSTS", "METRICS", "EvalContext", "Metric", "categorical_codes", "register_metric"]
