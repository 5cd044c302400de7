"""The processes of a torchrun launch: this process's rank, its device, its share, the gathering.

`torchrun --nproc_per_node N` starts N processes and tells each its place through the environment
(RANK, WORLD_SIZE, LOCAL_RANK, and MASTER_ADDR / MASTER_PORT for the rendezvous). A plain launch is
rank 0 of 1, and then nothing here touches `torch.distributed`. Used by `pydeblur deblur` (gloo, for
the one gather of the summary, whatever the device) and `training.train` (DistributedDataParallel:
NCCL on GPUs, gloo on CPUs).
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the launch: `rank` of `world`, and `local_rank` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs, checkpoints and prints the summaries."""
        return self.rank == 0

    def take(self, items: list) -> list:
        """This rank's share of `items`: items rank, rank + world, rank + 2 world, ...

        >>> Ranks(rank=1, world=3).take(list("abcdefg"))
        ['b', 'e']
        """
        return items[self.rank :: self.world]

    def device(self, device: str | torch.device) -> torch.device:
        """One GPU per rank: a CUDA device without an index becomes cuda:(local_rank mod the number
        of GPUs), and a CUDA device is made the current one (the rank's kernels and FFT plans go to
        its own GPU). Other devices are returned as they are.

        >>> Ranks(rank=1, world=2, local_rank=1).device("cpu")
        device(type='cpu')
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def gather(self, obj) -> list:
        """`obj` (any picklable object) of every rank, in rank order; every rank must call it.

        >>> Ranks().gather({"done": 3})
        [{'done': 3}]
        """
        if self.world == 1:
            return [obj]
        objects: list = [None] * self.world
        dist.all_gather_object(objects, obj)
        return objects

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing to wait for in a single process)."""
        if self.world > 1:
            dist.barrier()

    def stop(self) -> None:
        """Leave the process group, where there is one."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def from_env() -> Ranks:
    """The ranks torchrun gives in RANK, WORLD_SIZE and LOCAL_RANK (each 0, 1, 0 when unset).

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}):
    ...     from_env()
    Ranks(rank=3, world=4, local_rank=1)
    """
    return Ranks(
        rank=int(os.environ.get("RANK", "0")),
        world=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def backend_for(device: str | torch.device) -> str:
    """The backend for processes computing on `device`: "nccl" for CUDA, else "gloo".

    >>> backend_for("cuda:1"), backend_for("cpu")
    ('nccl', 'gloo')
    """
    return "nccl" if str(device).startswith("cuda") else "gloo"


def start(backend: str) -> Ranks:
    """This process's `Ranks` (`from_env`); under torchrun (world > 1) it also joins the process
    group with `backend` ("gloo" or "nccl"), unless the group exists already. With NCCL, GPU
    local_rank is first made the current device (one GPU per rank). `Ranks.stop` leaves it."""
    where = from_env()
    if where.world == 1:
        return where
    if backend == "nccl":
        torch.cuda.set_device(where.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=where.rank, world_size=where.world)
    return where
