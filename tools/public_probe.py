"""Probe a public server as a hostile visitor would: the Gradio API and raw HTTP, never the UI.

    python -m tools.public_probe            # starts `genlab serve --public` on a free port, prints each probe

Every unlisted model value must get the one neutral refusal, no file route may serve a path outside
what Gradio itself wrote, and an upload over the public cap must be refused. Prints one line a probe
and exits 1 if any probe got through.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from genlab.settings import REPO, PublicLimits
from tests.support import free_port

NEUTRAL = "unknown model; choose one from the list"


def get(url: str) -> int | str:
    """The HTTP status of a GET; "page" for the dashboard's own HTML page, which Streamlit serves (200)
    for any path no route takes, so that its client can route pages itself: no file is served."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read(4096)
        return "page" if body.lstrip().startswith(b"<!--") and b"Streamlit" in body else response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return type(error).__name__


def probe(url: str, scratch: Path) -> list[str]:
    """Run every probe against a server at `url`; returns the probes that got through."""
    from gradio_client import Client, handle_file
    client = Client(url + "/explorer/", verbose=False)
    shipped = REPO / "checkpoints" / "mnist-gan.safetensors"
    failures = []
    for value in ["/etc/passwd", str(shipped), "checkpoints/../checkpoints/mnist-gan", "checkpoints/mnist-judge",
                  "runs/../../etc", "hf://../../etc/passwd", "hf://gpt2", "CHECKPOINTS/MNIST-GAN"]:
        try:
            answer = str(client.predict(value, 0, api_name="/select_model")[0])
        except Exception as error:  # noqa: BLE001  (the refusal arrives as an AppError)
            answer = str(error)
        ok = answer.strip() == NEUTRAL
        print(f"select_model {value!r}: {'refused' if ok else 'GOT THROUGH: ' + answer[:80]}")
        failures += [] if ok else [f"select_model {value}"]
    for path in ["/explorer/file=/etc/passwd", "/explorer/gradio_api/file=/etc/passwd",
                 f"/explorer/gradio_api/file={shipped}", "/app/static/../../../etc/passwd", "/..%2f..%2fetc/passwd",
                 # the Live page's grid route: run folders of the runs root only, PNG grids only
                 "/genlab-runs/..%2f..%2fetc/samples/step_000000.png", "/genlab-runs/x/samples/..%2f..%2fconfig.json",
                 "/genlab-runs/.genlab/samples/step_000000.png", "/genlab-runs/x/samples/%2fetc%2fpasswd",
                 # the Live page's curves route: run folders of the runs root only
                 "/genlab-curves?runs=..", "/genlab-curves?runs=..%2f..%2fetc", "/genlab-curves?runs=.genlab",
                 "/genlab-curves?runs=%2fetc", "/genlab-curves?runs=x%00y", "/genlab-curves?runs=" + ",".join("x" * 9)]:
        status = get(url + path)
        print(f"GET {path}: {status}")
        failures += [] if status in (400, 403, 404, "page") else [f"GET {path}"]
    big = scratch / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(PublicLimits.public_defaults().max_upload_bytes + 1024))
    try:
        client.predict(handle_file(str(big)), "checkpoints/mnist-vae", api_name="/encode")
        print("upload over the cap: GOT THROUGH")
        failures.append("upload")
    except Exception as error:  # noqa: BLE001
        print(f"upload over the cap (gradio_client): refused ({str(error)[:70]})")
    import httpx                                     # the same upload posted raw, past any client check
    with open(big, "rb") as f:
        status = httpx.post(url + "/explorer/gradio_api/upload", files={"files": ("big.png", f, "image/png")},
                            timeout=60).status_code
    print(f"upload over the cap (raw POST): {status}")
    failures += [] if status in (400, 413) else ["raw upload"]
    return failures


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="genlab-probe-"))
    port = free_port()
    env = dict(os.environ, GENLAB_PUBLIC="1", GENLAB_RUNS_ROOT=str(scratch / "runs"))
    server = subprocess.Popen([sys.executable, "-m", "genlab.serve", "--port", str(port), "--public"], cwd=REPO,
                              env=env, stdout=open(scratch / "server.log", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while get(url + "/_stcore/health") != 200:
            if server.poll() is not None or time.time() > deadline:
                print((scratch / "server.log").read_text()[-2000:])
                return 2
            time.sleep(0.5)
        failures = probe(url, scratch)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:          # open client connections hold uvicorn's graceful exit
            os.killpg(server.pid, signal.SIGKILL)
    print(f"{len(failures)} probe(s) got through" + (f": {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
