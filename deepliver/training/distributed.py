"""Data-parallel training with PyTorch's own engine, when started by ``torchrun``.

``torchrun --nproc_per_node=N -m deepliver train ...`` starts N processes with RANK, WORLD_SIZE
and LOCAL_RANK set; each builds the same network, draws its own batches (the rank is part of
its random seed), and DistributedDataParallel averages the gradients, so N processes take the
same number of optimiser steps as one, on N times the data. Process 0 alone validates and
writes the log, checkpoints and the model. CPU uses the gloo backend, GPUs NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Workers:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start(device: str = "auto") -> Workers:
    """This process's place among the workers, and the device it trains on."""
    from deepliver.inference.cascade import resolve_device

    kind = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        torch.set_num_threads(os.cpu_count() or 1)
        return Workers(0, 1, torch.device(kind))
    dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":
        torch.cuda.set_device(local)
        chosen = torch.device("cuda", local)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        chosen = torch.device("cpu")
    return Workers(dist.get_rank(), dist.get_world_size(), chosen)


def wrap(network: torch.nn.Module, workers: Workers) -> torch.nn.Module:
    """The network as the training step calls it: DDP across processes, else itself."""
    if not workers.distributed:
        return network
    from torch.nn.parallel import DistributedDataParallel

    ids = [workers.device.index] if workers.device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=ids)


def mean(value: float, workers: Workers) -> float:
    """The average of ``value`` over the processes (for the logged loss)."""
    if not workers.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=workers.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / workers.world


def wait(workers: Workers) -> None:
    """Every process reaches this point before any goes on."""
    if workers.distributed:
        dist.barrier()


def stop(workers: Workers) -> None:
    if workers.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
