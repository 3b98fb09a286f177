"""Data-parallel training over several processes, started by `torchrun` (or any launcher that sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT).

Each process trains the same model on its own random batches; after every backward pass the
gradients are averaged over all processes before the optimizer steps, so the weights stay
identical everywhere, exactly as DistributedDataParallel keeps them. We average in an optimizer
step pre-hook rather than wrapping G and D in DDP because a GAN step does not fit DDP's one
forward / one backward pattern: D runs on real and on fake data before one backward, D is frozen
in the G step, and R1 differentiates D with respect to its input. BatchNorm buffers follow rank 0,
as with DDP's broadcast_buffers. NCCL is used on GPUs and gloo on CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    """This process's place in the group: rank, world size, local rank; world_size 1 means alone."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this object created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def from_environment(device_type: str) -> Distributed:
    """Join the process group torchrun describes in the environment (nccl on cuda, gloo otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
        else:
            dist.init_process_group("gloo")
        owns = True
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns)


def _flat_by_dtype(tensors: list[torch.Tensor]) -> dict:
    groups: dict = {}
    for tensor in tensors:
        groups.setdefault(tensor.dtype, []).append(tensor)
    return groups


def broadcast_tensors(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite `tensors` on every rank with rank `src`'s values, one collective per dtype."""
    for group in _flat_by_dtype(tensors).values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, src)
        offset = 0
        for tensor in group:
            n = tensor.numel()
            tensor.data.copy_(flat[offset:offset + n].view(tensor.shape))
            offset += n


def broadcast_module(module: torch.nn.Module, src: int = 0, buffers_only: bool = False) -> None:
    """Give every rank rank `src`'s parameters (unless buffers_only) and buffers (BatchNorm stats)."""
    tensors = [] if buffers_only else [p for p in module.parameters()]
    tensors += [b for b in module.buffers()]
    if tensors:
        broadcast_tensors(tensors, src)


def average_gradients_before_step(optimizer: torch.optim.Optimizer, world_size: int):
    """Register a pre-step hook that replaces each gradient by its mean over all ranks (one all-reduce)."""
    def hook(opt, args, kwargs):
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        for group in _flat_by_dtype(grads).values():
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            flat.div_(world_size)
            offset = 0
            for grad in group:
                n = grad.numel()
                grad.copy_(flat[offset:offset + n].view(grad.shape))
                offset += n
    return optimizer.register_step_pre_hook(hook)


def all_ranks_mean(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `values` over all ranks (a float tensor, returned in place)."""
    dist.all_reduce(values)
    return values.div_(dist.get_world_size())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one (one small all-reduce; syncs the host)."""
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)
