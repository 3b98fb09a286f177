"""The feature extractors sample quality is measured in: the frozen judge of the data set (MNIST,
Fashion-MNIST, emoji64: classifier-FID, KID, precision/recall, class histograms) and torch-fidelity's
Inception-v3 (FID on RGB data).

The networks and their files live in `genlab.judge` (with its `--train` command) and
`genlab.inception`; neither imports the metrics, so there is no import circle.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..inception import InceptionUnavailable, inception_features, load_inception
from ..judge import (DEFAULT_JUDGE, FEATURE_DIM, JUDGE_INPUT_SHAPES, JUDGED_DATASETS, MNIST_SHAPE, Judge, JudgeError,
                     MnistJudge, describe_shape, judge_outputs, load_judge)

JUDGE_IMAGE_SHAPE = MNIST_SHAPE      # the 28x28 judges'; each judge reads its own `judge.input_shape`
JUDGE_CLASSES = 10                   # the 28x28 judges'; each judge has its own `judge.num_classes`


def judge_fits(image_shape: tuple, judge: Judge | None = None) -> bool:
    """Whether `judge` (default: a 28x28 grayscale judge) reads images of this (C, H, W) shape."""
    return tuple(image_shape) == tuple(getattr(judge, "input_shape", JUDGE_IMAGE_SHAPE))


def try_judge(path: str | Path | None, image_shape: tuple, device,
              dataset: str = "mnist") -> tuple[Judge | None, str | None]:
    """The judge of `dataset` (its shipped file, or `path`), or (None, the reason there is none): a data
    set is never judged by another's judge, nor images of another shape than the judge reads."""
    if dataset not in JUDGED_DATASETS:
        return None, f"there is no judge for {dataset} (judges: {', '.join(JUDGED_DATASETS)})"
    image_shape = tuple(image_shape)
    if image_shape != JUDGE_INPUT_SHAPES[dataset]:
        return None, (f"the {dataset} judge reads {describe_shape(JUDGE_INPUT_SHAPES[dataset])} images only, "
                      f"not {describe_shape(image_shape)}")
    try:
        judge = load_judge(path, device, dataset)
    except JudgeError as error:
        return None, str(error)
    if not judge_fits(image_shape, judge):
        return None, f"the judge at {path} reads {describe_shape(judge.input_shape)} images, not {describe_shape(image_shape)}"
    return judge, None


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255], the input Inception-v3 takes."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


__all__ = ["DEFAULT_JUDGE", "FEATURE_DIM", "JUDGED_DATASETS", "JUDGE_CLASSES", "JUDGE_IMAGE_SHAPE", "InceptionUnavailable", "JudgeError",
           "Judge", "MnistJudge", "inception_features", "judge_fits", "judge_outputs", "load_inception", "load_judge",
           "to_uint8", "try_judge"]
