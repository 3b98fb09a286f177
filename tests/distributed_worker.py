"""Run by tests/test_distributed.py under torchrun (2 gloo processes on the CPU); not a test itself.

Each rank trains three times into the same folders: a full run, a run stopped by rank 0's
should_stop hook, and that run resumed. After each, it writes what it trained (weights and
BatchNorm buffers of G and D, as safetensors) and what train() returned (JSON) into OUT.
"""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from genlab.models.dcgan import Discriminator, Generator
from genlab.training import make_config, resume, train

seen = {}              # the last G and D this process ran, and a checksum of its first real batch


def remember(module, inputs, output):
    if isinstance(module, (Generator, Discriminator)):
        seen[type(module).__name__] = module
        if isinstance(module, Discriminator) and "first_batch" not in seen:
            seen["first_batch"] = inputs[0].detach().double().sum().item()


def save_state(out: Path, name: str, rank: int, result: dict) -> None:
    tensors = {f"{kind}.{key}": value.detach().cpu().contiguous()
               for kind in ("Generator", "Discriminator") for key, value in seen[kind].state_dict().items()}
    save_file(tensors, str(out / f"{name}-rank{rank}.safetensors"))
    (out / f"{name}-rank{rank}.json").write_text(json.dumps(dict(result, first_batch=seen["first_batch"])))
    seen.clear()


def main(out: Path, runs_root: Path) -> None:
    dist.init_process_group("gloo")          # train() joins an existing group and leaves it open
    rank = dist.get_rank()
    torch.nn.modules.module.register_module_forward_hook(remember)
    config = make_config({"model": "dcgan", "dataset": "synthetic", "device": "cpu", "steps": 6,
                          "batch_size": 16, "log_every": 2, "sample_every": 4, "checkpoint_every": 4,
                          "seed": 3}, {"g_channels": 8, "d_channels": 8})
    save_state(out, "full", rank, train(config, runs_root / "full"))

    calls = {"n": 0}

    def stop_after_three_steps() -> bool:             # asked before every step, on rank 0 only
        calls["n"] += 1
        return calls["n"] > 3
    save_state(out, "stopped", rank, train(config, runs_root / "stopped", should_stop=stop_after_three_steps))
    save_state(out, "resumed", rank, resume(runs_root / "stopped", steps=6))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
