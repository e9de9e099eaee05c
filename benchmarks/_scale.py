"""Scaling (``--scale``): big tables, deep history, a feed that missed many changes.

Opt-in because loading takes minutes: 1 M keys (one bulk ``INSERT … SELECT
generate_series`` per 200k, through the library's table so its triggers write
the history), and 1 M history rows (10 keys updated 100k times, one commit per
round of updates so each version has its own ``changed_at``). Each figure is
still a comparison measured alternating: a table size against the smallest, a
DAL call against the same SQL from ``queries/*.sql`` on a raw connection, a
feed catch-up against catching up one change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from amira_data_access import ConfigChange, ConfigDAL
from amira_data_access.core.arguments import prefix_end

from . import _internals
from ._context import Context, load_queries
from ._server import KEY_PREFIX, str_keys
from ._timing import Comparison, ComparisonResult, Contender

__all__ = ["SCALE_COMPARISONS"]

HOT_KEYS = 10  # keys whose history is made deep
CATCH_UP_TIMEOUT_S = 300.0
# Sorts after every loaded key (bench.svc…), so the outage's update never locks it.
HOLD_KEY = f"{KEY_PREFIX}zz.feed-hold"
HOLD_MARKER = "bench-feed-hold"


def _sizes(ctx: Context) -> tuple[int, int, int]:
    return (100, 1000, 5000) if ctx.quick else (1000, 100_000, 1_000_000)


def _label(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000} M"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000} k"
    return str(count)


def _middle(ctx: Context) -> int:
    return 2000 if ctx.quick else 100_000


def get_by_table_size(ctx: Context) -> Comparison:
    """``ConfigDAL.get`` on tables of 1 k, 100 k and 1 M keys (one database each)."""
    contenders = []
    for i, count in enumerate(_sizes(ctx)):
        dsn, keys = ctx.dataset(count)
        dal = ctx.stack.enter_context(ConfigDAL(dsn))
        stream = ctx.key_stream(keys, salt=count)
        contenders.append(
            Contender(
                f"scale.get.{count}",
                f"`ConfigDAL.get`, {_label(count)} keys in the table",
                lambda dal=dal, stream=stream: dal.get(next(stream)),
                anchor=None if i == 0 else f"scale.get.{_sizes(ctx)[0]}",
            )
        )
    return Comparison(
        "scale_get",
        "`get` by table size",
        contenders,
        ops=ctx.ops(1000, 30),
        note="Random keys over the whole table, each table in its own database on the same "
        "server (shared_buffers is shared: a big table's pages can crowd out a small one's).",
    )


def list_paging(ctx: Context) -> Comparison:
    """Walking 100 k keys by prefix in keyset pages of 100: the DAL vs the same SQL raw."""
    count = _middle(ctx)
    dsn, _keys = ctx.dataset(count)
    dal = ctx.stack.enter_context(ConfigDAL(dsn))
    conn = ctx.connect(dsn)
    statement: str = load_queries("configurations.sql").list_configurations.sql
    after: dict[str, str | None] = {"dal": None, "raw": None}

    def dal_page() -> object:
        page = dal.list(KEY_PREFIX, after=after["dal"], limit=100)
        after["dal"] = page[-1].key if len(page) == 100 else None  # the end: start over
        return page

    def raw_page() -> object:
        params = {
            "prefix": KEY_PREFIX,
            "prefix_end": prefix_end(KEY_PREFIX),
            "after": after["raw"],
            "limit": 100,
        }
        rows = conn.execute(statement, params, prepare=True).fetchall()
        after["raw"] = rows[-1][0] if len(rows) == 100 else None
        return rows

    pages = count // 100

    def describe(result: ComparisonResult) -> list[str]:
        lines = []
        for key in ("scale.list.dal", "scale.list.raw"):
            r = result.get(key)
            if r is not None and r.rounds:
                walks = sorted(s.busy_ns / 1e9 for s in r.rounds)
                lines.append(
                    f"- {r.contender.label}: one walk through all {count:,} keys "
                    f"({pages:,} pages) took {walks[len(walks) // 2]:.2f} s "
                    f"(min–max {walks[0]:.2f}–{walks[-1]:.2f} s)."
                )
        return lines

    return Comparison(
        "scale_list",
        f"`list` paging through {_label(count)} keys (prefix, keyset pages of 100)",
        [
            Contender("scale.list.raw", "`list_configurations` SQL, raw (prepared)", raw_page),
            Contender(
                "scale.list.dal",
                "`ConfigDAL.list(prefix, after=…, limit=100)`",
                dal_page,
                anchor="scale.list.raw",
            ),
        ],
        ops=pages,
        warmup_ops=min(pages, 100),
        describe=describe,
        note="One operation is one page; a round is one full walk per contender.",
    )


# -- history ------------------------------------------------------------------------------


class _History:
    """The 100 k key database, with HOT_KEYS keys updated ``versions`` times each."""

    def __init__(self, ctx: Context) -> None:
        self.versions = 500 if ctx.quick else 100_000
        self.dsn, keys = ctx.dataset(_middle(ctx))
        self.hot = str_keys(keys)[:HOT_KEYS]
        started = time.monotonic()
        self._deepen()
        self.load_seconds = time.monotonic() - started
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            early = max(2, self.versions // 100)
            row = conn.execute(
                "SELECT changed_at FROM amira_config.configuration_history"
                " WHERE key = %s AND version = %s",
                (self.hot[0], early),
            ).fetchone()
            assert row is not None
            self.early: datetime = row[0]
            self.early_version = early
            count = conn.execute("SELECT count(*) FROM amira_config.configuration_history")
            self.history_rows = int(count.fetchone()[0])  # type: ignore[index]
        self.now = datetime.now(UTC)
        ctx.facts["History data"] = (
            f"{self.history_rows:,} history rows: {len(self.hot)} keys × {self.versions:,} "
            f"updates, one commit per round of updates (`synchronous_commit = off` for the load "
            f"only), loaded in {self.load_seconds:.0f} s"
        )

    def _deepen(self) -> None:
        # One commit per round: each version gets its own now() (changed_at), as real
        # edits do; a DO block commits in place, with no round trip per version.
        block = sql.SQL(
            "DO $$ BEGIN FOR i IN 1..{versions} LOOP"
            " UPDATE amira_config.configurations SET value = to_jsonb('v' || i)"
            " WHERE key = ANY({keys}::text[]); COMMIT; END LOOP; END $$"
        ).format(versions=sql.Literal(self.versions), keys=sql.Literal(self.hot))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute(block)
            conn.execute("VACUUM ANALYZE amira_config.configurations")
            conn.execute("VACUUM ANALYZE amira_config.configuration_history")

    def explain(self, statement: str, params: dict[str, Any]) -> list[str]:
        """``EXPLAIN (ANALYZE, BUFFERS)`` of ``statement`` after one warm-up run, as lines."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement, params).fetchall()
            rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params).fetchall()
        return [str(row[0]) for row in rows]


def _history_data(ctx: Context) -> _History:
    existing = ctx.shared.get("history")
    if isinstance(existing, _History):
        return existing
    data = ctx.shared["history"] = _History(ctx)  # one load, three comparisons
    return data


def _explained(name: str, statement: str, plan: list[str]) -> list[str]:
    return [f"`{name}`:", "", "```sql", statement.strip(), "```", "", "```", *plan, "```", ""]


def _history_comparison(
    ctx: Context,
    key: str,
    title: str,
    query: str,
    params: dict[str, Any],
    dal_call: Callable[[ConfigDAL], object],
    dal_label: str,
    ops: int,
) -> Comparison:
    data = _history_data(ctx)
    statement: str = getattr(load_queries("history.sql"), query).sql
    dal = ctx.stack.enter_context(ConfigDAL(data.dsn))
    conn = ctx.connect(data.dsn)

    def raw() -> object:
        return conn.execute(statement, params, prepare=True).fetchall()

    return Comparison(
        key,
        title,
        [
            Contender(f"{key}.raw", f"`{query}` SQL, raw (prepared)", raw),
            Contender(f"{key}.dal", dal_label, lambda: dal_call(dal), anchor=f"{key}.raw"),
        ],
        ops=ops,
        warmup_ops=1,
        details=_explained(query, statement, data.explain(statement, params)),
        note=f"On {data.history_rows:,} history rows; the plan below is the raw statement's "
        "with the same parameters, after one warm-up run.",
    )


def history_of_key(ctx: Context) -> Comparison:
    """``history(key)`` (newest 100) of a key with 100 k versions."""
    data = _history_data(ctx)
    hot = data.hot[0]
    return _history_comparison(
        ctx, "scale_history", f"`history(key)` of a key with {_label(data.versions)} versions",
        "list_history", {"key": hot, "before_version": None, "limit": 100},
        lambda dal: dal.history(hot), "`ConfigDAL.history(key)` (newest 100)",
        ctx.ops(200, 10),
    )  # fmt: skip


def get_at_early(ctx: Context) -> Comparison:
    """``get_at`` on a key with 100 k versions, at an instant early in its history."""
    data = _history_data(ctx)
    hot, early = data.hot[0], data.early
    return _history_comparison(
        ctx, "scale_get_at",
        f"`get_at(key, early instant)`: version {data.early_version:,} of "
        f"{_label(data.versions)}",
        "get_value_at", {"key": hot, "at": early},
        lambda dal: dal.get_at(hot, early), "`ConfigDAL.get_at(key, early)`",
        ctx.ops(20, 3),
    )  # fmt: skip


def snapshot_whole(ctx: Context) -> Comparison:
    """``snapshot_at`` of the whole table (every key, from the history) at now."""
    data = _history_data(ctx)
    now = data.now
    return _history_comparison(
        ctx, "scale_snapshot", "`snapshot_at(now)` of the whole table",
        "get_snapshot_chunks_at", {"at": now, "prefix": "", "prefix_end": prefix_end("")},
        lambda dal: dal.snapshot_at(now), "`ConfigDAL.snapshot_at(now)` (every key)",
        ctx.ops(1, 1),
    )  # fmt: skip


# -- the change feed after a reconnect ----------------------------------------------------


class _Deliveries:
    """Counts the changes of one outage as the feed hands them to a subscriber.

    A change by ``HOLD_MARKER…`` holds the feed's thread in this callback until
    :meth:`release`: the listener cannot reconnect while the outage's changes commit
    (a commit of 100 k changes takes longer than the reconnect, which would then
    hear them announced live instead of missing them).
    """

    def __init__(self) -> None:
        self.marker = ""
        self.expected = 0
        self.seen = 0
        self.last_ns = 0
        self.done = threading.Event()
        self.holding = threading.Event()
        self._released = threading.Event()

    def expect(self, marker: str, count: int) -> None:
        self.marker, self.expected, self.seen = marker, count, 0
        self.done.clear()
        self.holding.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def __call__(self, change: ConfigChange) -> None:  # on the feed's thread
        if change.changed_by == self.marker:
            self.seen += 1
            if self.seen >= self.expected:
                self.last_ns = time.perf_counter_ns()
                self.done.set()
        elif change.changed_by.startswith(HOLD_MARKER):
            self.holding.set()
            self._released.wait(CATCH_UP_TIMEOUT_S)


def feed_catch_up(ctx: Context) -> Comparison:
    """Time to catch up after a reconnect, by the number of changes missed meanwhile."""
    counts = (1, 100, 1000) if ctx.quick else (1, 1000, 10_000, 100_000)
    dsn, _keys = ctx.dataset(max(counts), purpose="feed")
    # The feed's "disconnected" warnings would go to logging's last-resort stderr handler.
    library_logger = logging.getLogger("amira_data_access")
    quiet = logging.NullHandler()
    library_logger.addHandler(quiet)
    ctx.stack.callback(library_logger.removeHandler, quiet)
    admin = ctx.connect(dsn)
    admin.execute(
        "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
        " VALUES (%s, '0', 'int', 'benchmarks') ON CONFLICT (key) DO NOTHING",
        (HOLD_KEY,),
    )
    dal = ctx.stack.enter_context(ConfigDAL(dsn))
    deliveries = _Deliveries()
    ctx.stack.enter_context(dal.subscribe(deliveries))
    writer = ctx.stack.enter_context(psycopg.connect(dsn))  # not autocommit: we commit
    rounds = iter(range(1 << 30))

    def outage(count: int) -> Callable[[], int]:
        def op() -> int:
            marker = f"bench-feed-{next(rounds)}"
            deliveries.expect(marker, count)
            writer.execute(
                "UPDATE amira_config.configurations SET updated_by = %s WHERE key IN"
                " (SELECT key FROM amira_config.configurations ORDER BY key LIMIT %s)",
                (marker, count),
            )  # open, not yet committed: the listener is cut before it commits
            # The listener's thread held in a callback (a change of the hold key, past
            # the keys updated), so it reconnects only once the outage has committed.
            admin.execute(
                "UPDATE amira_config.configurations SET updated_by = %s WHERE key = %s",
                (f"{HOLD_MARKER}-{marker}", HOLD_KEY),  # a new writer each time: a change
            )
            if not deliveries.holding.wait(CATCH_UP_TIMEOUT_S):
                writer.rollback()
                raise RuntimeError("the hold key's change never reached the subscriber")
            cut = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                (_internals.LISTENER_APPLICATION_NAME,),
            ).fetchone()
            if cut is None or cut[0] != 1:
                writer.rollback()
                deliveries.release()
                raise RuntimeError(f"expected to cut one listener session, cut {cut}")
            writer.commit()
            committed, committed_at = time.perf_counter_ns(), time.monotonic()
            deliveries.release()
            if not deliveries.done.wait(CATCH_UP_TIMEOUT_S):
                raise RuntimeError(
                    f"{deliveries.seen}/{count} changes after {CATCH_UP_TIMEOUT_S} s"
                )
            # The feed says it is live (last_sync) only after it handed out the catch-up
            # and heard its heartbeat back: wait for that, outside the timed span.
            deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
            synced = _internals.feed_last_sync(dal)
            while (synced is None or synced < committed_at) and time.monotonic() < deadline:
                time.sleep(0.005)
                synced = _internals.feed_last_sync(dal)
            if synced is None or synced < committed_at:
                raise RuntimeError("the changes were announced live, not missed: cut too late")
            return deliveries.last_ns - committed

        return op

    def describe(result: ComparisonResult) -> list[str]:
        base = result.get("scale.feed.1")
        lines = []
        for count in counts[1:]:
            r = result.get(f"scale.feed.{count}")
            if base is None or r is None:
                continue
            per = (r.p50_us.median - base.p50_us.median) / (count - 1)
            lines.append(
                f"- {count:,} missed: {per:.1f} µs per missed change beyond the first "
                "(p50 difference to the 1-change anchor / (N − 1))."
            )
        return lines

    return Comparison(
        "scale_feed",
        "Change feed catch-up after a reconnect, by changes missed",
        [
            Contender(
                f"scale.feed.{count}",
                f"{count:,} change{'s' if count > 1 else ''} missed",
                outage(count),
                anchor=None if count == 1 else "scale.feed.1",
                self_timed=True,
            )
            for count in counts
        ],
        ops=1,
        warmup_ops=1,
        describe=describe,
        note="One operation: N keys updated in one open transaction, the listener's thread held "
        "in a subscriber callback (a change of another key), its session terminated "
        "(`pg_terminate_backend`), then the commit and the thread released; timed from the "
        "commit until the N-th change reached a `ConfigDAL.subscribe` callback: the feed's "
        "reconnect back-off, connect, the missed-changes query and the dispatch. The hold keeps "
        "the listener from reconnecting while a big commit is still running (it would then hear "
        "the changes announced live); the run checks the feed's last resync came after the "
        "commit, so the changes were re-read, not announced.",
    )


SCALE_COMPARISONS: tuple[tuple[str, Callable[[Context], Comparison]], ...] = (
    ("scale_get", get_by_table_size),
    ("scale_list", list_paging),
    ("scale_history", history_of_key),
    ("scale_get_at", get_at_early),
    ("scale_snapshot", snapshot_whole),
    ("scale_feed", feed_catch_up),
)
