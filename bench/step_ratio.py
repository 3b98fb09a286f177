"""genlab's GAN training step beside the PyTorch DCGAN tutorial's loop body, in one process.

    python -m bench.step_ratio                          # batch 64, 7 rounds of 20 steps, torch's threads
    OMP_NUM_THREADS=1 python -m bench.step_ratio --batch 64,128 --rounds 9

Isolates the step from the data path (bench/throughput.py compares the whole loops, the tutorial's
DataLoader included): one process, so one OpenMP setting for all; the tutorial's networks
(bench/reference_dcgan.py) start from genlab's initial weights; every loop draws its real batches
with genlab's in-memory batcher. Timed, round by round in alternating order:
  genlab        model.training_step with its defaults (reuse_fakes on)
  genlab-fresh  the same with reuse_fakes off (a second z batch and G forward for the G step)
  tutorial      the tutorial's iteration as written: Sigmoid + BCELoss, two D backward calls,
                D not frozen in the G step, five `.item()` reads
Models are every registered one whose G and D have the tutorial networks' parameter shapes.
Printed: images/s per loop (median [min-max] over rounds) and genlab / tutorial (median of the
per-round ratios [min-max]).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import genlab  # noqa: F401  (first, as train.py does: genlab's OpenMP default, for every loop here)
import torch
import torch.nn as nn

from bench.reference_dcgan import BETA1, LR, NZ, Discriminator, Generator
from bench.throughput import tutorial_networks_match
from genlab.config import TrainConfig
from genlab.data import load_dataset
from genlab.models import MODELS, StepContext
from genlab.training import build_for_data, make_config

REPO = Path(__file__).resolve().parents[1]


def genlab_loop(model_name: str, data, batch: int, reuse_fakes: bool):
    """One genlab training step per call, as the training loop makes it."""
    torch.manual_seed(0)
    config = make_config({"model": model_name, "dataset": data.name, "batch_size": batch},
                         {"reuse_fakes": reuse_fakes})
    model = build_for_data(config, data).train()
    optimizers, rng = model.make_optimizers(), torch.Generator().manual_seed(0)
    next_batch, step = data.batcher(batch, rng), [0]

    def one_step():
        model.training_step(next_batch, optimizers, StepContext(step[0], rng, total_steps=10 ** 9))
        step[0] += 1
    return one_step, model


def tutorial_loop(model, data, batch: int):
    """The tutorial's iteration (bench/reference_dcgan.py) on networks holding `model`'s initial weights."""
    net_g, net_d = Generator(data.channels, data.image_size), Discriminator(data.channels, data.image_size)
    for ours, theirs in ((model.generator, net_g), (model.discriminator, net_d)):
        for target, source in zip(theirs.state_dict().values(), ours.state_dict().values()):
            target.copy_(source.reshape(target.shape))
    z = torch.randn(2, NZ, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():                                  # the same networks: the same images from the same z
        assert torch.allclose(net_g(z[:, :, None, None]), model.generator(z), atol=1e-6), "G weights differ"
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(net_d.parameters(), lr=LR, betas=(BETA1, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=LR, betas=(BETA1, 0.999))
    next_batch = data.batcher(batch, torch.Generator().manual_seed(0))

    def one_step():
        net_d.zero_grad()
        real = next_batch()[0]
        label = torch.full((batch,), 1.0)
        output = net_d(real).view(-1)
        err_d_real = criterion(output, label)
        err_d_real.backward()
        output.mean().item()
        fake = net_g(torch.randn(batch, NZ, 1, 1))
        label.fill_(0.0)
        output = net_d(fake.detach()).view(-1)
        err_d_fake = criterion(output, label)
        err_d_fake.backward()
        output.mean().item()
        opt_d.step()
        net_g.zero_grad()
        label.fill_(1.0)
        output = net_d(fake).view(-1)
        err_g = criterion(output, label)
        err_g.backward()
        output.mean().item()
        opt_g.step()
        err_g.item(), (err_d_real + err_d_fake).item()
    return one_step


def images_per_s(one_step, steps: int, batch: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    return steps * batch / (time.perf_counter() - started)


def describe(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def compare(model_name: str, data, batch: int, args) -> dict:
    loops = {}
    loops["genlab"], model = genlab_loop(model_name, data, batch, reuse_fakes=True)
    loops["genlab-fresh"], _ = genlab_loop(model_name, data, batch, reuse_fakes=False)
    loops["tutorial"] = tutorial_loop(model, data, batch)
    for one_step in loops.values():
        images_per_s(one_step, args.warmup, batch)
    speeds = {name: [] for name in loops}
    for round_index in range(args.rounds):
        order = list(loops) if round_index % 2 == 0 else list(loops)[::-1]
        for name in order:
            speeds[name].append(images_per_s(loops[name], args.steps, batch))
    ratios = {name: [g / t for g, t in zip(speeds[name], speeds["tutorial"])] for name in ("genlab", "genlab-fresh")}
    print(f"{model_name} {data.name} batch {batch}: " +
          " | ".join(f"{name} {describe(values)} img/s" for name, values in speeds.items()))
    print(f"  genlab / tutorial {describe(ratios['genlab'], 2)}x; "
          f"genlab-fresh / tutorial {describe(ratios['genlab-fresh'], 2)}x", flush=True)
    return {"speeds": speeds, "ratios": ratios}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.step_ratio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="64", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (medians are reported)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per loop first")
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    data = load_dataset(TrainConfig(dataset="mnist", data_root=args.mnist_root))
    match_args = argparse.Namespace(mnist_root=args.mnist_root, work="", faces=0)
    models = [name for name in MODELS if tutorial_networks_match(name, "mnist", match_args)]
    if not models:
        raise SystemExit("no registered model has the tutorial's networks at 28 px")
    for model_name in models:
        for batch in (int(b) for b in args.batch.split(",")):
            compare(model_name, data, batch, args)


if __name__ == "__main__":
    main()
