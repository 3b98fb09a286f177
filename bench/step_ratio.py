"""genlab's GAN training step beside the PyTorch DCGAN tutorial's loop body, in one process.

    python -m bench.step_ratio                          # batch 64, 7 rounds of 20 steps, torch's threads
    OMP_NUM_THREADS=1 python -m bench.step_ratio --batch 64,128 --rounds 9
    OMP_NUM_THREADS=1 python -m bench.step_ratio --channels-last --no-fresh --size 28,64

Isolates the step from the data path (bench/throughput.py compares the whole loops, the tutorial's
DataLoader included): one process, so one OpenMP setting for all; the tutorial's networks
(bench/reference_dcgan.py) start from genlab's initial weights; every loop draws its real batches
with genlab's in-memory batcher. Timed, round by round in alternating order:
  genlab        model.training_step with its defaults (reuse_fakes on), channels_last off (NCHW)
  genlab-fresh  the same with reuse_fakes off (a second z batch and G forward for the G step)
  genlab-cl     (--channels-last) genlab with model and batches in channels_last, as the trainer
                sets them when TrainConfig.channels_last is on; first checked to give genlab's losses
  tutorial      the tutorial's iteration as written: Sigmoid + BCELoss, two D backward calls,
                D not frozen in the G step, five `.item()` reads
Models are every registered one whose G and D have the tutorial networks' parameter shapes.
Sizes: 28 is MNIST; 64 is random 3-channel 64 px images (a step's time does not depend on the pixels).
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
from bench.throughput import tutorial_shapes_match
from genlab.config import TrainConfig
from genlab.data import ImageData, load_dataset
from genlab.models import MODELS, StepContext
from genlab.training import build_for_data, make_config, use_channels_last

REPO = Path(__file__).resolve().parents[1]


def genlab_loop(model_name: str, data, batch: int, reuse_fakes: bool, channels_last: bool = False):
    """One genlab training step per call (returning its logs), as the training loop makes it."""
    torch.manual_seed(0)
    config = make_config({"model": model_name, "dataset": data.name, "batch_size": batch,
                          "channels_last": "on" if channels_last else "off"}, {"reuse_fakes": reuse_fakes})
    model = build_for_data(config, data).train()
    memory_format = torch.channels_last if use_channels_last(config["train"]["channels_last"], model,
                                                             torch.device("cpu")) else None
    if memory_format is not None:
        model.to(memory_format=memory_format)                 # as genlab/training/trainer.py does
    optimizers, rng = model.make_optimizers(), torch.Generator().manual_seed(0)
    next_batch, step = data.batcher(batch, rng, memory_format), [0]

    def one_step():
        logs = model.training_step(next_batch, optimizers, StepContext(step[0], rng, total_steps=10 ** 9))
        step[0] += 1
        return logs
    return one_step, model


def check_same_losses(model_name: str, data, batch: int, steps: int = 5) -> list[float]:
    """Per step, the largest |difference| of the logged scalars of genlab and genlab-cl (same seeds).

    The first step runs the same weights on the same batch and latents: it must agree to float
    tolerance. Later steps drift apart by Adam's early updates (m / sqrt(v) is about sign(g), so
    gradients near zero that differ in rounding move weights by up to lr), as any reordering of the
    sums would; they are printed, not checked.
    """
    plain, _ = genlab_loop(model_name, data, batch, reuse_fakes=True)
    nhwc, _ = genlab_loop(model_name, data, batch, reuse_fakes=True, channels_last=True)
    worst = []
    for _ in range(steps):
        a, b = plain(), nhwc()
        worst.append(max(abs(a[k].item() - b[k].item()) for k in a))
    if worst[0] > 1e-4:
        raise SystemExit(f"{model_name}: channels_last changes the first step's losses by {worst[0]:.2e}")
    return worst


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
    if args.channels_last:
        worst = check_same_losses(model_name, data, batch)
        print(f"  genlab-cl: the same first-step losses as genlab (largest difference {worst[0]:.1e}); "
              f"steps 2-{len(worst)}: {', '.join(f'{w:.0e}' for w in worst[1:])}", flush=True)
        loops["genlab-cl"], _ = genlab_loop(model_name, data, batch, reuse_fakes=True, channels_last=True)
    if not args.no_fresh:
        loops["genlab-fresh"], _ = genlab_loop(model_name, data, batch, reuse_fakes=False)
    loops["tutorial"] = tutorial_loop(model, data, batch)
    for one_step in loops.values():
        images_per_s(one_step, args.warmup, batch)
    speeds = {name: [] for name in loops}
    for round_index in range(args.rounds):
        order = list(loops) if round_index % 2 == 0 else list(loops)[::-1]
        for name in order:
            speeds[name].append(images_per_s(loops[name], args.steps, batch))
    ratios = {name: [g / t for g, t in zip(speeds[name], speeds["tutorial"])] for name in loops if name != "tutorial"}
    if "genlab-cl" in loops:
        ratios["genlab-cl / genlab"] = [c / g for c, g in zip(speeds["genlab-cl"], speeds["genlab"])]
    print(f"{model_name} {data.name} {data.image_size}px batch {batch}, {torch.get_num_threads()} threads: " +
          " | ".join(f"{name} {describe(values)} img/s" for name, values in speeds.items()))
    print("  " + "; ".join(f"{name if '/' in name else name + ' / tutorial'} {describe(values, 2)}x"
                           for name, values in ratios.items()), flush=True)
    return {"speeds": speeds, "ratios": ratios}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.step_ratio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="64", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (medians are reported)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per loop first")
    parser.add_argument("--channels-last", action="store_true",
                        help="also time genlab with model and batches in channels_last (genlab-cl)")
    parser.add_argument("--no-fresh", action="store_true", help="leave out genlab-fresh (reuse_fakes off)")
    parser.add_argument("--size", default="28", help="comma-separated image sizes: 28 (MNIST), 64 (random)")
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    for size in (int(s) for s in args.size.split(",")):
        if size == 28:
            data = load_dataset(TrainConfig(dataset="mnist", data_root=args.mnist_root))
        elif size == 64:
            pixels = torch.randint(256, (2048, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
            data = ImageData("celeba64", pixels, torch.zeros(2048, dtype=torch.long), 1)
        else:
            raise SystemExit(f"--size takes 28 or 64, not {size}")
        models = [name for name in MODELS if tutorial_shapes_match(name, data.channels, size)]
        if not models:
            raise SystemExit(f"no registered model has the tutorial's networks at {size} px")
        for model_name in models:
            for batch in (int(b) for b in args.batch.split(",")):
                compare(model_name, data, batch, args)


if __name__ == "__main__":
    main()
