"""This process's place among the ``torchrun`` ranks, and the few collectives the library uses.

Every layer that splits work across ranks (the semantic step's embedding and retrieval, ranking
evaluation, DDP training) takes its rank, its share of rows and its collectives from here, so the
rules are one: shares are strided (``rows[rank::world]``, sizes differ by at most one), gloo on CPU,
NCCL on CUDA, and a group is destroyed only by the code that created it.

One process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) is rank 0 of 1, and every collective is then
the identity, so callers never branch on whether they run distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the platform has one (so
    ``taskset`` and cgroup cpusets are respected), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_job(jobs: int) -> int:
    """An equal share of :func:`usable_cpus` for each of ``jobs`` processes running at once."""
    return max(1, usable_cpus() // max(jobs, 1))


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    owned: bool = False  # the process group was created here, so :meth:`close` destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's share of ``rows`` (strided, so shares differ by at most one row)."""
        return rows[self.rank :: self.world]

    def _device(self) -> torch.device:
        # NCCL moves CUDA tensors only; gloo CPU tensors.
        return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")

    def mean(self, value: float) -> float:
        """Mean of a Python number over ranks."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def broadcast(self, obj):
        """``obj`` as rank 0 has it, on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard_of(self, rows: np.ndarray, rank: int) -> np.ndarray:
        """Rank ``rank``'s share of ``rows`` (what :meth:`shard` gives on that rank)."""
        return rows[rank :: self.world]

    def gather_shards(self, local: np.ndarray, total: int) -> np.ndarray:
        """The array of ``total`` rows whose strided share ``rank::world`` each rank holds as
        ``local``, assembled on every rank. Row shapes and dtype must agree across ranks."""
        rows = np.arange(total)
        return self.gather_rows(local, [self.shard_of(rows, r) for r in range(self.world)], total)

    def gather_rows(self, local: np.ndarray, rows_of_rank: list[np.ndarray], total: int) -> np.ndarray:
        """The array of ``total`` rows of which each rank holds ``local``: rows ``rows_of_rank[rank]``
        (known on every rank), assembled on every rank."""
        local = np.ascontiguousarray(local)
        out = np.empty((total, *local.shape[1:]), dtype=local.dtype)
        if not self.active:
            out[rows_of_rank[0]] = local
            return out
        longest = max(len(r) for r in rows_of_rank)
        padded = np.zeros((longest, *local.shape[1:]), dtype=local.dtype)
        padded[: len(local)] = local
        mine = torch.from_numpy(padded).to(self._device())
        parts = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(parts, mine)
        for rows, part in zip(rows_of_rank, parts, strict=True):
            out[rows] = part[: len(rows)].cpu().numpy()
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this code created it. Every rank leaves together: a rank
        destroying the group while its peer was still inside the last collective aborted that peer
        under load."""
        if self.active and self.owned:
            dist.barrier()
            dist.destroy_process_group()


def init_distributed(device: torch.device | None = None) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (one process otherwise):
    NCCL when computing on CUDA, gloo on CPU. An existing group is joined, not replaced."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    owned = not dist.is_initialized()
    if owned:
        on_gpu = device is not None and device.type == "cuda"
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return DistContext(rank=dist.get_rank(), world=dist.get_world_size(), owned=owned)
