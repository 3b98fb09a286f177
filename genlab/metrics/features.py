"""The feature extractors sample quality is measured in: the frozen judge of the data set (MNIST,
Fashion-MNIST: classifier-FID, KID, precision/recall, class histograms) and torch-fidelity's
Inception-v3 (FID on RGB data).

The networks and their files live in `genlab.judge` (with its `--train` command) and
`genlab.inception`; neither imports the metrics, so there is no import circle.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..inception import InceptionUnavailable, inception_features, load_inception
from ..judge import DEFAULT_JUDGE, FEATURE_DIM, JUDGED_DATASETS, JudgeError, MnistJudge, judge_outputs, load_judge

JUDGE_IMAGE_SHAPE = (1, 28, 28)
JUDGE_CLASSES = 10


def judge_fits(image_shape: tuple) -> bool:
    """Whether a judge can read images of this (C, H, W) shape."""
    return tuple(image_shape) == JUDGE_IMAGE_SHAPE


def try_judge(path: str | Path | None, image_shape: tuple, device,
              dataset: str = "mnist") -> tuple[MnistJudge | None, str | None]:
    """The judge of `dataset` (its shipped file, or `path`), or (None, the reason there is none): a data
    set is never judged by another's judge."""
    if dataset not in JUDGED_DATASETS:
        return None, f"there is no judge for {dataset} (judges: {', '.join(JUDGED_DATASETS)})"
    if not judge_fits(image_shape):
        return None, f"the {dataset} judge reads {JUDGE_IMAGE_SHAPE[1]}x{JUDGE_IMAGE_SHAPE[2]} grayscale images only"
    try:
        return load_judge(path, device, dataset), None
    except JudgeError as error:
        return None, str(error)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255], the input Inception-v3 takes."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


__all__ = ["DEFAULT_JUDGE", "FEATURE_DIM", "JUDGED_DATASETS", "JUDGE_CLASSES", "JUDGE_IMAGE_SHAPE", "InceptionUnavailable", "JudgeError",
           "MnistJudge", "inception_features", "judge_fits", "judge_outputs", "load_inception", "load_judge",
           "to_uint8", "try_judge"]
