"""pydeblur.distributed: the ranks from torchrun's environment, single-process no-ops, and two gloo
processes sharing a list and gathering their records."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pydeblur import distributed
from pydeblur.distributed import Ranks


def test_ranks_come_from_the_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.from_env() == Ranks(0, 1, 0) and Ranks().main
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.from_env() == Ranks(rank=3, world=4, local_rank=1)
    assert not distributed.from_env().main


def test_a_single_process_joins_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    where = distributed.start("nccl")  # a single process never needs the backend
    assert where == Ranks() and not dist.is_initialized()
    assert where.gather({"done": 1}) == [{"done": 1}]
    assert where.take([1, 2, 3]) == [1, 2, 3]
    assert where.device("cpu") == torch.device("cpu")
    where.barrier()
    where.stop()


def test_shares_cover_every_item_once():
    items = list(range(11))
    shares = [Ranks(rank, 3).take(items) for rank in range(3)]
    assert sorted(sum(shares, [])) == items
    assert shares[1] == [1, 4, 7, 10]


def test_backends():
    assert distributed.backend_for("cuda") == distributed.backend_for("cuda:1") == "nccl"
    assert distributed.backend_for("cpu") == distributed.backend_for(torch.device("cpu")) == "gloo"


def free_port() -> int:
    """A TCP port free on this machine now, for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_torchrun_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives process `rank` of `world` on one machine (rendezvous at port)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE=str(world), LOCAL_RANK=str(rank))


def _worker(rank, world, port, out):
    set_torchrun_env(rank, world, port)
    where = distributed.start("gloo")
    try:
        assert dist.is_initialized() and where == Ranks(rank, world, rank)
        mine = where.take(list("abcde"))
        records = where.gather({"rank": rank, "items": mine})
        where.barrier()
    finally:
        where.stop()
    assert not dist.is_initialized()
    if where.main:
        torch.save(records, os.path.join(out, "records.pt"))


def test_two_gloo_processes_share_and_gather(tmp_path):
    mp.start_processes(
        _worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    records = torch.load(tmp_path / "records.pt")
    assert records == [{"rank": 0, "items": ["a", "c", "e"]}, {"rank": 1, "items": ["b", "d"]}]
