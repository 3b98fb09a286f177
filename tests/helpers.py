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
