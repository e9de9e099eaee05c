"""What every case's setup may use: the server, the loaded keys, sizes, shared connections."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosql
import psycopg

from amira_data_access import ConfigDAL

from ._server import Target, load_keys, scratch_database

__all__ = ["QUERIES_DIR", "CaseUnavailableError", "Context", "load_queries"]

QUERIES_DIR = Path(__file__).resolve().parents[1] / "queries"


class CaseUnavailableError(Exception):
    """The case cannot run here (the message says why: a missing server, client, or right)."""


def load_queries(file: str) -> Any:
    """The named SQL of ``queries/<file>`` as aiosql loads it for psycopg (``.sql`` per name).

    Loaded from the repository's files, not through the library: the raw
    baselines run exactly the statements a DBA reviewed.
    """
    return aiosql.from_path(QUERIES_DIR / file, "psycopg")


@dataclass
class Context:
    """The run's shared state; datasets of other sizes are created on first use.

    ``run_stack`` closes what lives for the whole run (the shared DAL and raw
    connection, extra databases); ``stack`` is swapped for each comparison by the
    runner, so what a comparison opens (a cache and its listener thread, a Redis
    server) is closed before the next one is measured.
    """

    target: Target
    keys: list[str]
    seed: int
    run_stack: ExitStack
    quick: bool
    ops_scale: float = 1.0
    stack: ExitStack = field(default_factory=ExitStack)
    facts: dict[str, str] = field(default_factory=dict)  # extra lines for the Setup section
    shared: dict[str, Any] = field(default_factory=dict)  # data loaded once, used by several
    _dal: ConfigDAL | None = field(default=None, repr=False)
    _raw: psycopg.Connection[Any] | None = field(default=None, repr=False)
    _datasets: dict[tuple[int, str], tuple[str, list[str]]] = field(
        default_factory=dict, repr=False
    )

    @property
    def dsn(self) -> str:
        """The main configuration database."""
        return self.target.dsn

    def ops(self, full: int, quick: int) -> int:
        """Operations per case per round: the full or --quick count, times --ops-scale."""
        return max(1, round((quick if self.quick else full) * self.ops_scale))

    def dal(self) -> ConfigDAL:
        """One ConfigDAL with default settings, shared by the sync cases (as a service has one)."""
        if self._dal is None:
            self._dal = self.run_stack.enter_context(ConfigDAL(self.dsn))
        return self._dal

    def raw(self) -> psycopg.Connection[Any]:
        """One autocommit psycopg connection, shared by the raw baselines."""
        if self._raw is None:
            self._raw = self.run_stack.enter_context(psycopg.connect(self.dsn, autocommit=True))
        return self._raw

    def connect(self, dsn: str | None = None) -> psycopg.Connection[Any]:
        """A new autocommit connection, closed at the end of the run."""
        return self.stack.enter_context(psycopg.connect(dsn or self.dsn, autocommit=True))

    def key_stream(self, keys: list[str] | None = None, salt: int = 0) -> Iterator[str]:
        """Random keys of ``keys`` (default: the loaded set); the same seeded sequence per call."""
        pool = keys if keys is not None else self.keys
        rng = random.Random(self.seed + salt)
        return itertools.cycle([rng.choice(pool) for _ in range(1 << 16)])

    def batch_stream(self, keys: list[str], size: int) -> Iterator[list[str]]:
        """Random distinct-key batches of ``size``; the same seeded sequence per call."""
        rng = random.Random(self.seed + size)
        return itertools.cycle([rng.sample(keys, size) for _ in range(32)])

    def dataset(self, count: int, purpose: str = "") -> tuple[str, list[str]]:
        """A migrated database of its own holding ``count`` keys: (dsn, keys), made once.

        ``purpose`` gives a case a database nobody else writes to (the feed case).
        """
        marker = (count, purpose)
        if marker not in self._datasets:
            name = f"amira_bench_{purpose or 'keys'}_{count}"
            try:
                dsn = self.run_stack.enter_context(scratch_database(self.dsn, name))
            except psycopg.Error as exc:
                raise CaseUnavailableError(
                    f"cannot create database {name} (needs CREATEDB): {exc}"
                ) from exc
            with ConfigDAL(dsn) as dal:
                dal.migrate()
            self._datasets[marker] = (dsn, load_keys(dsn, count))
        return self._datasets[marker]
