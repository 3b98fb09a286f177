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


@pytest.fixture
def runs_root(tmp_path, monkeypatch) -> Path:
    """An empty runs root the pages read (GENLAB_RUNS_ROOT), a data root beside it, no public caps."""
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("GENLAB_RUNS_ROOT", str(root))
    monkeypatch.setenv("GENLAB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("GENLAB_SECRET", "test-secret")
    for name in [n for n in os.environ if n.startswith("GENLAB_MAX_") or n == "GENLAB_PUBLIC"]:
        monkeypatch.delenv(name)
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A real tiny run of a GAN pair on the synthetic set, trained to the end in this process."""
    from genlab import train
    from genlab.training import make_config
    from picks import GAN_PAIR
    run_dir = tmp_path_factory.mktemp("trained") / "tiny-finished"
    config = make_config(dict(model=GAN_PAIR, dataset="synthetic", image_size=28, steps=6, batch_size=8,
                              log_every=2, sample_every=3, checkpoint_every=3, device="cpu"),
                         dict(g_channels=4, d_channels=4, z_dim=8))
    train(config, run_dir)
    return run_dir


@pytest.fixture
def server(tmp_path):
    """`python -m genlab.serve --port PORT` (the README's launch command) with its own runs folder;
    yields (url, runs root) and stops every run left active there."""
    import time
    from genlab import runs
    from helpers import serving
    root = tmp_path / "runs"
    with serving(tmp_path / "server.log", "--runs-root", str(root), env={"GENLAB_PUBLIC": "0"}) as url:
        try:
            yield url, root
        finally:
            for info in runs.list_runs(root):                   # never leave a training process behind
                if runs.is_active(info.status):
                    runs.request_stop(info.path)
            for info in runs.list_runs(root):
                deadline = time.time() + 60
                while runs.is_active(runs.read_status(info.path)) and time.time() < deadline:
                    time.sleep(0.2)
