"""Shared by the tests: tiny run configs (each model declares its own `tiny`), browser helpers."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_config(model: str, model_fields: dict | None = None, **train):
    """A run config on the synthetic set with the model's own `tiny` config (plus `model_fields`)."""
    from genlab import make_config
    from genlab.models import MODELS
    values = dict(model=model, dataset="synthetic", image_size=28, steps=4, batch_size=8,
                  log_every=2, sample_every=2, checkpoint_every=2, device="cpu")
    values.update(train)
    return make_config(values, dict(MODELS[model].tiny, **(model_fields or {})))


def _tiny_configs() -> dict:
    from genlab.models import MODELS
    return {name: dict(cls.tiny) for name, cls in MODELS.items()}


TINY_MODEL = _tiny_configs()     # {name: tiny config} of the models registered at import, from the registry



def wait_for(condition, timeout=90.0, what="condition"):
    """Poll `condition()` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_until_inactive(run_dir: Path) -> dict:
    """The status of a run once its training process has ended."""
    from genlab import runs
    return wait_for(lambda: (lambda s: None if runs.is_active(s) else s)(runs.read_status(run_dir)),
                    what="the training process to end")

# ---------------------------------------------------------------- browser tests
from support import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: F401  (re-exported for the browser tests)



@contextlib.contextmanager
def serving(log_path: Path, *args: str, env: dict | None = None):
    """`python -m genlab.serve --port PORT ARGS` until it answers its health check; yields its URL."""
    import pytest
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    port = free_port()
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "genlab.serve", "--port", str(port), *args],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=dict(os.environ, **(env or {})))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert process.poll() is None and time.time() < deadline, Path(log_path).read_text()
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def copy_run(source: Path, root: Path, name: str, **status) -> Path:
    """A copy of a run folder with some status fields replaced (as its training process would write them)."""
    import shutil
    from genlab import runs
    run_dir = root / name
    shutil.copytree(source, run_dir)
    if status:
        runs.atomic_write_json(run_dir / "status.json", dict(runs.read_json(run_dir / "status.json"), **status))
    return run_dir


def assert_judge_reads_its_test_set(judge, train, test, min_accuracy: float, floor_ratio: float = 0.05,
                                    distort=lambda images: images.flip(2)) -> None:
    """A shipped judge: its accuracy on the whole test split, and a real-vs-real FID (3k train vs the test
    split) far below (`floor_ratio`) that of distorted test images (default upside down). A small split
    (emoji64's 330 test images) has a larger finite-sample floor, and emoji are often symmetric, so it is
    given another distortion and ratio."""
    from genlab.judge import judge_outputs
    from genlab.metrics.distances import fid_from_features
    features, logits = judge_outputs(judge, test.images)
    assert (logits.argmax(1) == test.labels).float().mean().item() >= min_accuracy
    train_features, _ = judge_outputs(judge, train.images[:3000])
    floor = fid_from_features(train_features, features)
    distorted = fid_from_features(train_features, judge_outputs(judge, distort(test.images[:3000]))[0])
    assert floor < floor_ratio * distorted
