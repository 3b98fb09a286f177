#!/usr/bin/env python
"""Slider latency of the latent explorer, per model: prints numbers, asserts nothing.

    python -m bench.explorer_latency                    # every checkpoint in checkpoints/
    python -m bench.explorer_latency --events 50 --threads 2 path/to/ckpt.safetensors ...

It launches the explorer (build_explorer) in its own process on a free localhost port and, for each
checkpoint, sends slider events through gradio_client (/generate with a new random slider value each
time; diffusion and flow models at --steps sampling steps and their default guidance):
  - in-process render: the same `render` in this process, for comparison,
  - function: the handler's own time (compose latent, run the generator, convert; measured inside),
  - round trip: from the gradio_client call to the image file on the client (queue, PNG encoding,
    HTTP, download included), i.e. what a browser waits at least.
The target is < 100 ms from slider event to image on the server for the MNIST models on 2 cores.
"""
from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


from genlab.latent import z_range
from genlab.models import HasSamplingKnobs
from genlab.explorer import (EXPLORER_THREADS, KNOBS, MAX_CATEGORICAL, MAX_CONTINUOUS, MAX_Z_SLIDERS,
                             Catalog, Controls, ModelCache, TrajectoryCache, render)

KNOB_UI_DEFAULTS = (25, "", 1.0)   # the explorer's steps slider, sampler dropdown ("" = the model's) and w slider


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control_values(rng: np.random.Generator, seed: int, spec, knobs: dict) -> list:
    """One random slider position: z sliders (within the prior's slider range), class, categorical and
    continuous codes, then the sampling knobs (steps, sampler, guidance; UI defaults where `knobs` is silent)."""
    low, high = z_range(spec)
    return [seed, int(rng.integers(10)), *rng.uniform(low, high, MAX_Z_SLIDERS).round(2).tolist(),
            *rng.integers(0, 10, MAX_CATEGORICAL).tolist(), *rng.uniform(-1, 1, MAX_CONTINUOUS).round(2).tolist(),
            *(knobs.get(name, default) for name, default in zip(KNOBS, KNOB_UI_DEFAULTS))]


def sampling_knobs(model, steps: int) -> dict:
    """The knobs every event sends: `steps` and the model's own default guidance for a model with sampling
    knobs (both the in-process render and the client use them), {} for the others."""
    offered = model.sampling_knobs() if isinstance(model, HasSamplingKnobs) else {}
    knobs = {"steps": steps} if "steps" in offered else {}
    if "guidance" in offered:
        knobs["guidance"] = offered["guidance"]["default"]
    return knobs


def summary(values_ms: list[float]) -> str:
    values = sorted(values_ms)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"median {statistics.median(values):6.1f}  p90 {p90:6.1f}  max {values[-1]:6.1f} ms"


SERVER = """
import sys
from pathlib import Path
from genlab.explorer import build_explorer
from genlab.settings import Settings
folder, threads, port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
demo = build_explorer(Settings(checkpoints_dir=folder, runs_root=Path("/nonexistent-runs")), torch_threads=threads)
demo.launch(server_port=port, quiet=True)
"""


def serve_elsewhere(folder: Path, threads: int, wait_s: float = 180.0):
    """The explorer in its own process, as a browser meets it (a client in the server's process would
    share its interpreter lock and slow the handler); returns (process, connected gradio_client)."""
    from gradio_client import Client
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(folder), str(threads), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return server, Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:                                                       # not listening yet
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit(f"the explorer server did not start (exit code {server.poll()})")
            time.sleep(1.0)


def framework_floor(events: int) -> list[float]:
    """Round trips to a Blocks whose handler returns a fixed image: what no model code can go below."""
    import gradio as gr
    from gradio_client import Client
    picture = np.zeros((252, 252), np.uint8)
    with gr.Blocks() as floor:
        seed, image = gr.Number(0), gr.Image(format="png")
        seed.submit(lambda value: picture + int(value) % 255, seed, image, api_name="fixed")
    port = free_port()
    floor.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        client, times = Client(f"http://127.0.0.1:{port}/", verbose=False), []
        for i in range(events):
            start = time.perf_counter()
            client.predict(i, api_name="/fixed")
            times.append((time.perf_counter() - start) * 1000)
        return times
    finally:
        floor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files (default: checkpoints/*.safetensors)")
    parser.add_argument("--events", type=int, default=40, help="slider events per model")
    parser.add_argument("--steps", type=int, default=25,
                        help="sampling steps of models with a steps knob (diffusion, flow); default 25")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the explorer's own setting, EXPLORER_THREADS)")
    args = parser.parse_args()
    paths = args.checkpoints or sorted(str(p) for p in Path("checkpoints").glob("*.safetensors"))
    if not paths:
        raise SystemExit("no checkpoints: pass checkpoint files or run from the repository root")
    folder = Path(paths[0]).parent
    from genlab.settings import Settings
    settings = Settings(checkpoints_dir=folder, runs_root=Path("/nonexistent-runs"))
    threads = args.threads or EXPLORER_THREADS
    torch.set_num_threads(threads)                                              # the in-process renders
    catalog = Catalog(settings)
    server, client = serve_elsewhere(folder, threads)
    rng = np.random.default_rng(0)
    print(f"torch threads {torch.get_num_threads()}, {args.events} slider events per model; times in ms")
    cache = ModelCache()
    try:
        for path in paths:
            path = f"checkpoints/{Path(path).stem}"                              # the explorer's entry key
            client.predict(path, 0, api_name="/select_model")                   # load + warm up
            entry = cache.get(catalog.resolve(path))
            knobs = sampling_knobs(entry.model, args.steps)
            direct, trajectories = [], TrajectoryCache()                         # as the handler renders
            for i in range(args.events):
                start = time.perf_counter()
                render(entry, Controls.from_values(control_values(rng, i, entry.spec, knobs)), None, trajectories)
                direct.append((time.perf_counter() - start) * 1000)
            function, round_trip = [], []
            for i in range(args.events):
                start = time.perf_counter()
                image_path, timing = client.predict(path, *control_values(rng, i, entry.spec, knobs), api_name="/generate")
                round_trip.append((time.perf_counter() - start) * 1000)
                function.append(float(re.search(r"server time ([\d.]+) ms", timing).group(1)))
                assert Path(image_path).exists()
            name = Path(path).stem + "".join(f", {k} {v:g}" for k, v in knobs.items())
            print(f"{name:16s} in-process render   {summary(direct)}")
            print(f"{'':16s} handler (server)    {summary(function)}")
            print(f"{'':16s} gradio_client trip  {summary(round_trip)}")
        floor = framework_floor(args.events)
        print(f"{'floor':16s} gradio_client trip  {summary(floor)}   (a Blocks returning a fixed "
              f"252x252 PNG, no model: gradio + HTTP + this machine's load)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
