"""What a server connection is really attached to: a pooler, a standby (issue 19).

A connection pooler (PgBouncer) answers the startup itself and announces a
backend pid of its own making, so ``conn.info.backend_pid`` differs from the
``pg_backend_pid()`` of the server process that runs the statements: one query
at :meth:`~amira_data_access.AsyncConfigDAL.open` tells a direct connection
from a pooled one, in either pooling mode.

Behind a pooler psycopg's prepared statements must be off: in transaction mode
the pooler hands each transaction whichever server connection is free, so a
statement prepared on one (``_pg3_0``) is missing on the next (``prepared
statement "_pg3_0" does not exist``) or is another query of the same name there
(``bind message supplies 7 parameters``, and the wrong rows: ``get_many``
returning ``{}`` for keys that exist). Without preparing, every statement is
self-contained and correct through any pooler, for one parse per call (what
the server did anyway for the first five calls of each query).

Only session mode keeps one server connection per client for the client's
whole life, which LISTEN needs; :func:`transaction_pooling` tells the modes
apart for the change feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .postgres import load_queries

__all__ = ["LSN", "ServerIdentity", "identify", "identify_async", "lsn", "transaction_pooling"]

LSN = int  # a WAL position as a number (pg_lsn 'X/Y' is X * 2**32 + Y)


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """What one query says about the server behind a connection."""

    backend_pid: int  # of the server process that ran the query
    in_recovery: bool  # a standby: read-only, no LISTEN
    behind_pooler: bool  # the connection's announced pid is not the server's
    statement_timeout_ms: int  # the session's, whatever we asked for at connect


def identify(conn: psycopg.Connection[Any]) -> ServerIdentity:
    """Ask the server behind ``conn`` who it is (one round trip)."""
    pid, in_recovery, timeout = load_queries().session_identity(conn)
    return ServerIdentity(
        int(pid), bool(in_recovery), int(pid) != conn.info.backend_pid, int(timeout)
    )


async def identify_async(conn: psycopg.AsyncConnection[Any]) -> ServerIdentity:
    """:func:`identify` for an async connection."""
    pid, in_recovery, timeout = await load_queries("apsycopg").session_identity(conn)
    return ServerIdentity(
        int(pid), bool(in_recovery), int(pid) != conn.info.backend_pid, int(timeout)
    )


def transaction_pooling(
    conn: psycopg.Connection[Any], conninfo: str, connect_kwargs: dict[str, Any]
) -> bool:
    """Whether the pooler behind ``conn`` moves it between server connections (transaction
    or statement mode), so that a LISTEN on it would be deaf to other sessions.

    A second client holds a transaction open while ``conn`` asks again which server
    process serves it. In session mode ``conn`` keeps its server process and the other
    client gets a different one. In transaction mode the pooler gives the other client
    a free server connection, by default the one ``conn`` just released (PgBouncer
    reuses the most recent first), and ``conn`` then lands elsewhere: either shows it.
    """
    queries = load_queries()
    first = identify(conn).backend_pid
    with psycopg.connect(conninfo, **{**connect_kwargs, "autocommit": False}) as other:
        held = int(queries.session_identity(other)[0])  # a transaction is open: pinned
        again = identify(conn).backend_pid
        other.rollback()
    return held == first or again != first


def lsn(text: str | None) -> LSN | None:
    """A pg_lsn's text (``16/B374D848``) as a number that compares like the position."""
    if text is None:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
