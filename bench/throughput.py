"""Training throughput: genlab's loop beside the PyTorch DCGAN tutorial's loop, in one run.

    python -m bench.throughput                                  # the tutorial-shaped model(s), MNIST, batch 64, 128
    python -m bench.throughput --models all --data mnist,faces64 --batch 128 --repeats 3

Every measurement runs in a fresh child process (so peak RSS is its own), both loops under the
same OMP_NUM_THREADS and OMP_WAIT_POLICY (--threads, --omp-wait-policy; each child prints what it
ran with), and the two loops alternate round by round, genlab first in odd rounds and the reference first in even ones, so
that a machine shared with others slows both alike. Each child trains `warmup` steps, then times
`steps` steps. Printed: images/s (median over rounds, and the range), the ratio genlab / reference
(median of the per-round ratios), peak RSS of the training process (and of the tutorial's
DataLoader workers), and peak CUDA memory on a GPU.

The reference runs beside every registered model whose generator and discriminator have exactly
the tutorial networks' parameter shapes at that image size (checked, never chosen by name).

faces64 is data of CelebA's shape: JPEG images of 178x218 pixels (as img_align_celeba) in
celeba/img_align_celeba, made once under --work; genlab reads them through its one-time uint8
cache (built before the timing starts), the tutorial through ImageFolder with its transforms.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OMP_POLICY_GIVEN = os.environ.get("OMP_WAIT_POLICY")     # before genlab sets its default (PASSIVE)
DCGAN_64_GFLOP = 2.5                # per image per training step (D step + G step), fwd + bwd


# ---------------------------------------------------------------- data of CelebA's shape
def make_faces(root: Path, count: int) -> Path:
    """`count` smooth random RGB JPEGs of 178x218 (CelebA's aligned size) in root/celeba/img_align_celeba."""
    import numpy as np
    from PIL import Image
    folder = root / "celeba" / "img_align_celeba"
    if len(list(folder.glob("*.jpg"))) >= count:
        return root
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = (rng.random((14, 12, 3)) * 255).astype("uint8")
        image = Image.fromarray(coarse).resize((178, 218), Image.BICUBIC)
        image.save(folder / f"{i + 1:06d}.jpg", quality=95)
    return root


def data_args(data: str, args) -> tuple[str, str]:
    """(genlab data set name, root folder) of a benchmark data set."""
    if data == "mnist":
        return "mnist", args.mnist_root
    return "celeba64", str(make_faces(Path(args.work), args.faces))


# ---------------------------------------------------------------- which models the tutorial matches
def tutorial_networks_match(model: str, data: str, args) -> bool:
    """Whether genlab's `model` at this data set's size has the tutorial's G and D (same parameter shapes)."""
    dataset, _ = data_args(data, args)
    return tutorial_shapes_match(model, *((1, 28) if dataset == "mnist" else (3, 64)))


def tutorial_shapes_match(model: str, channels: int, size: int) -> bool:
    """Whether genlab's `model` built for (channels, size) images has the tutorial's G and D parameter shapes."""
    import torch
    from bench.reference_dcgan import Discriminator, Generator
    from genlab.models import build_model
    try:
        built = build_model(model, {"channels": channels, "image_size": size})
    except Exception:                                     # a model that cannot be built at this size
        return False
    pairs = ((getattr(built, "generator", None), Generator(channels, size)),
             (getattr(built, "discriminator", None), Discriminator(channels, size)))
    shapes = lambda net: [tuple(p.shape) for p in net.parameters()]          # noqa: E731
    return all(isinstance(ours, torch.nn.Module) and shapes(ours) == shapes(theirs) for ours, theirs in pairs)


# ---------------------------------------------------------------- children
def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024                              # KiB on Linux


def child_genlab(args) -> dict:
    """genlab.training.train on a fresh run folder; times the steps after the warm-up ones."""
    import torch
    from genlab.training import make_config, train
    dataset, root = data_args(args.data, args)
    total = args.warmup + args.steps
    config = make_config({"model": args.model, "dataset": dataset, "data_root": root, "device": args.device,
                          "steps": total, "batch_size": args.batch, "seed": 0,
                          "sample_every": 10 ** 9, "checkpoint_every": 10 ** 9, "amp": args.amp,
                          "channels_last": args.channels_last, "compile": args.compile}, {})
    marks, calls = {}, {"n": 0}

    def should_stop() -> bool:                   # asked before every step: the clock starts at step `warmup`
        if calls["n"] == args.warmup:
            if torch.cuda.is_available() and args.device != "cpu":
                torch.cuda.synchronize()
            marks["start"] = time.perf_counter()
        calls["n"] += 1
        return False

    def on_event(kind, payload):                 # the last log comes after the last step, values read back
        if kind == "log" and payload["step"] == total:
            marks["end"] = time.perf_counter()
            marks["record"] = payload

    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", should_stop=should_stop, on_event=on_event)
    seconds = marks["end"] - marks["start"]
    return {"images_per_s": args.steps * args.batch / seconds, "seconds": seconds,
            "losses": {k: v for k, v in marks["record"].items() if k.startswith("loss/")}}


def child_reference(args) -> dict:
    """The DCGAN tutorial's loop (bench/reference_dcgan.py) on the same data, batch and architecture."""
    from bench.reference_dcgan import run
    dataset, root = data_args(args.data, args)
    if dataset == "celeba64":
        root = str(Path(root) / "celeba")                    # the tutorial's dataroot: ImageFolder root
    device = "cuda" if args.device == "auto" and __import__("torch").cuda.is_available() else \
        ("cpu" if args.device == "auto" else args.device)
    result = run("mnist" if dataset == "mnist" else "faces", root, args.batch, args.warmup, args.steps, device)
    result["workers_peak_rss_mb"] = peak_rss_mb(resource.RUSAGE_CHILDREN)
    return result


def run_child(loop: str, model: str, data: str, batch: int, args) -> dict:
    """One measurement in a fresh process; returns its JSON result."""
    command = [sys.executable, "-m", "bench.throughput", "--child", loop, "--models", model, "--data", data,
               "--batch", str(batch), "--warmup", str(args.warmup), "--steps", str(args.steps),
               "--steps-64", str(args.steps_64),
               "--device", args.device, "--amp", args.amp, "--channels-last", args.channels_last,
               "--mnist-root", args.mnist_root, "--work", args.work, "--faces", str(args.faces)]
    if args.compile:
        command.append("--compile")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_WAIT_POLICY=args.omp_wait_policy)   # both loops alike
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{loop} {model} {data} {batch} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def steps_for(data: str, args) -> int:
    return args.steps if data == "mnist" else args.steps_64


def child_main(args) -> None:
    if args.child == "genlab":
        import genlab  # noqa: F401  (first, as train.py does: it sets genlab's OpenMP default)
    import torch
    args.model, args.batch = args.models, int(args.batch)
    result = child_genlab(args) if args.child == "genlab" else child_reference(args)
    result["peak_rss_mb"] = peak_rss_mb()
    if torch.cuda.is_available() and args.device != "cpu":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        result["gpu"] = torch.cuda.get_device_name()
    result["threads"] = torch.get_num_threads()
    result["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- the comparison
def describe(values: list[float]) -> str:
    return f"{statistics.median(values):9.1f}  [{min(values):.1f}-{max(values):.1f}]"


def compare(args) -> list[dict]:
    """Alternate genlab and the reference (models with the tutorial's networks) per model, data set and batch."""
    from genlab.models import MODELS
    rows = []
    for data in args.data.split(","):
        if args.models == "all":
            models = tuple(MODELS)
        elif args.models == "tutorial":
            models = tuple(m for m in MODELS if tutorial_networks_match(m, data, args))
        else:
            models = tuple(args.models.split(","))
        if data != "mnist":
            print(f"preparing {data} ({args.faces} JPEGs of 178x218 and genlab's uint8 cache) ...", flush=True)
            make_faces(Path(args.work), args.faces)
            from genlab.config import TrainConfig
            from genlab.data import load_dataset
            load_dataset(TrainConfig(dataset="celeba64", data_root=args.work))      # builds the cache once
        for model in models:
            for batch in (int(b) for b in args.batch.split(",")):
                loops = ["genlab"]
                if not args.no_reference and tutorial_networks_match(model, data, args):
                    loops.append("reference")
                results = {loop: [] for loop in loops}
                for round_index in range(args.repeats):
                    order = loops if round_index % 2 == 0 else loops[::-1]
                    for loop in order:
                        results[loop].append(run_child(loop, model, data, batch, args))
                rows.append(report_row(model, data, batch, results))
    return rows


def report_row(model: str, data: str, batch: int, results: dict) -> dict:
    speeds = {loop: [r["images_per_s"] for r in rs] for loop, rs in results.items()}
    row = {"model": model, "data": data, "batch": batch,
           "genlab_images_per_s": statistics.median(speeds["genlab"]),
           "genlab_runs": speeds["genlab"],
           "genlab_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results["genlab"])}
    line = f"{model:8s} {data:8s} batch {batch:4d}  genlab {describe(speeds['genlab'])} img/s"
    first = results["genlab"][0]
    if "peak_cuda_mb" in first:
        row["genlab_peak_cuda_mb"] = first["peak_cuda_mb"]
        line += f"  peak CUDA {first['peak_cuda_mb']:.0f} MiB"
        if "reference" in results and data != "mnist":
            tflops = row["genlab_images_per_s"] * DCGAN_64_GFLOP / 1000
            row["tflops"] = tflops
            line += f"  ~{tflops:.0f} TFLOP/s"
    if "reference" in results:
        ratios = [g / r for g, r in zip(speeds["genlab"], speeds["reference"])]
        row.update(reference_images_per_s=statistics.median(speeds["reference"]),
                   reference_runs=speeds["reference"], ratio=statistics.median(ratios), ratios=ratios,
                   reference_peak_rss_mb=statistics.median(r["peak_rss_mb"] for r in results["reference"]),
                   reference_workers_peak_rss_mb=statistics.median(
                       r["workers_peak_rss_mb"] for r in results["reference"]))
        line += (f" | reference {describe(speeds['reference'])} img/s | ratio {row['ratio']:.2f}x "
                 f"[{min(ratios):.2f}-{max(ratios):.2f}]")
        line += (f" | peak RSS genlab {row['genlab_peak_rss_mb']:.0f} MiB, reference "
                 f"{row['reference_peak_rss_mb']:.0f} MiB + workers {row['reference_workers_peak_rss_mb']:.0f} MiB")
    else:
        line += f" | peak RSS {row['genlab_peak_rss_mb']:.0f} MiB"
    settings = {(r["threads"], r["omp_wait_policy"]) for rs in results.values() for r in rs}
    if len(settings) != 1:
        raise RuntimeError(f"the loops ran under different OpenMP settings: {settings}")
    line += "  (threads {}, OMP_WAIT_POLICY {})".format(*settings.pop())
    print(line, flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tutorial",
                        help="comma-separated registered names, all, or tutorial (the models with the "
                             "tutorial's networks, compared with its loop)")
    parser.add_argument("--data", default="mnist", help="comma-separated: mnist, faces64")
    parser.add_argument("--batch", default="64,128", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per comparison (medians are reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=50, help="timed steps on MNIST")
    parser.add_argument("--steps-64", type=int, default=10, help="timed steps at 64x64")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--amp", default="auto", choices=("auto", "off", "bf16"))
    parser.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--compile", action="store_true", help="genlab with torch.compile")
    parser.add_argument("--no-reference", action="store_true", help="genlab only")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for both loops (0: leave as it is, torch's default)")
    parser.add_argument("--omp-wait-policy", default=OMP_POLICY_GIVEN or "PASSIVE", choices=("PASSIVE", "ACTIVE"),
                        help="OMP_WAIT_POLICY for both loops (default: as set, else genlab's PASSIVE)")
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "genlab-bench"),
                        help="where the faces64 JPEGs and their cache are made")
    parser.add_argument("--faces", type=int, default=4096, help="number of faces64 images")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child", choices=("genlab", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.steps = steps_for(args.data, args)
        child_main(args)
        return
    import torch
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, OMP_WAIT_POLICY={args.omp_wait_policy} "
          f"OMP_NUM_THREADS={args.threads or os.environ.get('OMP_NUM_THREADS', 'default')} for both loops, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != 'cpu' else 'no GPU'}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = compare(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
