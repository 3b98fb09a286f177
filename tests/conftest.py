"""Shared fixtures: the real MNIST where it exists (../shared/data), skipped cleanly elsewhere."""
import os
from pathlib import Path

import pytest

# Tiny test models gain nothing from several threads, and on a busy machine OpenMP's spinning
# threads slow them down by orders of magnitude; subprocesses inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def mnist_root() -> Path | None:
    raw = SHARED_DATA / "MNIST" / "raw"
    return SHARED_DATA if (raw / "train-images-idx3-ubyte").exists() or \
        (raw / "train-images-idx3-ubyte.gz").exists() else None


@pytest.fixture
def mnist_data_root() -> Path:
    root = mnist_root()
    if root is None:
        pytest.skip("real MNIST not found at ../shared/data/MNIST/raw")
    return root
