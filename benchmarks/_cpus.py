"""Which CPUs the benchmark's client and the servers it starts run on.

Left to the scheduler, a PostgreSQL backend sometimes shares the client's core and
sometimes not, and a loopback round trip costs ~30 or ~120 µs by that alone (seen on
this 2-core machine: one case fast in a round, its anchor slow, the ratio anywhere in
0.4 to 2.6 times). Pinning the client to some CPUs and every server started here (PostgreSQL
and its backends, Redis, etcd) to the others gives every case and its anchor the same
wake-up path. Threads and processes inherit the affinity of the thread that starts
them, so the client's own helpers (pool workers, the feed's listener, pgbench, the
CLI) stay on the client's CPUs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["CpuSplit", "pin_client", "plan_split", "servers_started_here"]


@dataclass(frozen=True)
class CpuSplit:
    """The CPUs of the client (this process) and of the servers it starts."""

    client: frozenset[int]
    server: frozenset[int]

    def describe(self) -> str:
        """For the report's facts."""
        return (
            f"client (this process, its threads and the client programs it runs) pinned to "
            f"CPU {_cpus(self.client)}, the servers started here to CPU {_cpus(self.server)} "
            "(left to the scheduler, a backend shares the client's core in some rounds only, "
            "which alone moves a round trip between ~30 and ~120 µs)"
        )


def _cpus(cpus: frozenset[int]) -> str:
    return ", ".join(str(cpu) for cpu in sorted(cpus))


def plan_split(available: set[int] | None = None) -> CpuSplit | None:
    """Half the CPUs this process may use for the client, the other half for servers
    (the client gets the extra one of an odd count); None with fewer than 2 or where
    affinity cannot be set (not Linux)."""
    if available is None:
        if not hasattr(os, "sched_getaffinity"):
            return None
        available = os.sched_getaffinity(0)
    cpus = sorted(available)
    if len(cpus) < 2:
        return None
    middle = (len(cpus) + 1) // 2
    return CpuSplit(client=frozenset(cpus[:middle]), server=frozenset(cpus[middle:]))


_split: CpuSplit | None = None


def pin_client(split: CpuSplit | None) -> None:
    """Run this thread (and what it starts from now on) on the client's CPUs; remember the
    split for :func:`servers_started_here`. None: leave the scheduler be."""
    global _split
    _split = split
    if split is not None:
        os.sched_setaffinity(0, split.client)


@contextlib.contextmanager
def servers_started_here() -> Iterator[None]:
    """Within: processes this thread starts run on the servers' CPUs (and inherit them
    for their own children: PostgreSQL's backends); afterwards back to the client's."""
    split = _split
    if split is None:
        yield
        return
    os.sched_setaffinity(0, split.server)
    try:
        yield
    finally:
        os.sched_setaffinity(0, split.client)
