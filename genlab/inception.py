"""Inception-v3 features for FID on RGB data, through torch-fidelity's Inception-v3 (the TF-FID "compat" network
of Heusel 2017) when it is installed and its weights can be found; an optional dependency.

    pip install torch-fidelity
    weights: https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth
    python -m genlab.eval RUN --inception-weights weights-inception-2015-12-05-6726825d.pth

The FID itself is computed in `genlab.metrics` (sample_quality.py); this module imports no metrics.
"""
from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")


class InceptionUnavailable(RuntimeError):
    """Inception FID cannot run here: the library or the weights are missing; the message says what to do."""


def load_inception(weights: str | Path | None = None):
    """torch-fidelity's FID Inception-v3 giving 2048-d pool features, or InceptionUnavailable."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise InceptionUnavailable(
            "Inception FID needs the optional package torch-fidelity: `pip install torch-fidelity`, "
            f"then pass --inception-weights PATH (a copy of {WEIGHTS_URL}) or allow a download. "
            "The judge-based metrics (classifier-FID etc.) need neither and cover MNIST.") from None
    if weights is not None and not Path(weights).is_file():
        raise InceptionUnavailable(f"--inception-weights {weights}: no such file; download {WEIGHTS_URL} "
                                   f"on a machine with a connection and copy it here")
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                           feature_extractor_weights_path=str(weights) if weights else None).eval()
    except Exception as error:
        raise InceptionUnavailable(
            f"the Inception weights could not be loaded ({type(error).__name__}: {' '.join(str(error).split())[:200]}); "
            f"with no connection, download {WEIGHTS_URL} elsewhere and pass --inception-weights PATH") from None


@torch.no_grad()
def inception_features(network, images_uint8: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """2048-d features (N, 2048) of uint8 images (N, 3, H, W); torch-fidelity resizes to 299 itself."""
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"Inception features need uint8 RGB images (N, 3, H, W), got "
                         f"{images_uint8.dtype} {tuple(images_uint8.shape)}")
    chunks = [network(images_uint8[i:i + batch_size])[0].reshape(-1, 2048).double()
              for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(chunks)

