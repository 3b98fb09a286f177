#!/usr/bin/env python
"""Explorer server time of one image for models with a sampling trajectory: prints numbers, asserts nothing.

    python -m bench.denoiser_latency                     # default and tiny configs, 25 steps, some widths
    python -m bench.denoiser_latency --steps 25 --events 5 --widths 64,48,32

For each registered HasTrajectory model (picked by capability), untrained weights, MNIST-sized (28 px, 1
channel, 10 classes): the explorer's `render` (latent, sampler, conversion; the trajectory the scrubber
reads is recorded on the way) with a new seed per event, at guidance 1 (two network halves per step, the
default for a class-conditional model) and guidance 0 (one). The issue's target: < 0.5 s for the shipped
model at 25 steps. torch runs with the explorer's own thread count (EXPLORER_THREADS).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from genlab.explorer import EXPLORER_THREADS, MAX_CATEGORICAL, MAX_CONTINUOUS, Controls, Loaded, \
    TrajectoryCache, render
from genlab.models import MODELS, HasTrajectory, build_model

MNIST = {"image_size": 28, "channels": 1, "num_classes": 10}


def time_render(model, steps: int, guidance: float, events: int) -> float:
    """Median ms of `render` over `events` seeds (a first, unmeasured call warms up)."""
    entry = Loaded("bench", model.eval(), model.latent_spec(), {}, None)
    cache, times = TrajectoryCache(), []
    for seed in range(events + 1):
        controls = Controls(seed, 3, [], [0] * MAX_CATEGORICAL, [0.0] * MAX_CONTINUOUS,
                            {"steps": steps, "guidance": guidance})
        start = time.perf_counter()
        render(entry, controls, None, cache)
        if seed:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--widths", default="64,48,32,24", help="U-Net widths to try besides the tiny config")
    args = parser.parse_args()
    torch.set_num_threads(EXPLORER_THREADS)
    print(f"torch threads {torch.get_num_threads()}, {args.steps} steps, median of {args.events} renders; ms")
    for name in sorted(n for n, cls in MODELS.items() if issubclass(cls, HasTrajectory)):
        configs = [(f"width {w}" + (" (default)" if w == MODELS[name].config_class().width else ""),
                    dict(MNIST, width=w)) for w in map(int, args.widths.split(","))]
        configs.append(("tiny", dict(MNIST, **MODELS[name].tiny)))
        for label, fields in configs:
            torch.manual_seed(0)
            model = build_model(name, fields)
            params = sum(p.numel() for p in model.network.parameters()) / 1e6
            at_1, at_0 = (time_render(model, args.steps, w, args.events) for w in (1.0, 0.0))
            print(f"{name:6s} {label:18s} {params:6.2f} M params   guidance 1: {at_1:7.1f}   guidance 0: {at_0:7.1f}")


if __name__ == "__main__":
    main()
