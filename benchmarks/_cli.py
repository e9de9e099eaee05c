"""The command line: set up the server, run every comparison, write the report."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from amira_data_access import ConfigDAL
from amira_data_access.settings import describe_dsn

from ._cases import COMPARISONS, MemoryResult, measure_cache_memory
from ._context import CaseUnavailableError, Context
from ._cpus import pin_client, plan_split
from ._report import Run, machine_facts, render
from ._scale import SCALE_COMPARISONS
from ._server import load_keys, remove_keys, target
from ._timing import Comparison, ComparisonResult, run_comparison

__all__ = ["main"]

DEFAULT_OUTPUT = Path(__file__).parent / "RESULTS.md"
Setup = Callable[[Context], Comparison]


def _parser() -> argparse.ArgumentParser:
    names = ", ".join(name for name, _ in (*COMPARISONS, *SCALE_COMPARISONS))
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Compare amira-data-access with raw psycopg, asyncpg, a dict, Redis, etcd, pgbench "
            "and psql, each case next to its anchor in the same run: operation by operation, "
            "alternating, the order rotated every round; reports the median over rounds, the "
            "min-max across rounds and the per-round ratio to the anchor. Starts its own "
            "durable throwaway PostgreSQL (and Redis/etcd when installed) unless --dsn is "
            "given, and writes a Markdown report."
        ),
        epilog=f"comparisons: {names}, memory",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per comparison (default 9; --quick: 2)"
    )
    parser.add_argument(
        "--ops-scale",
        type=float,
        default=1.0,
        help="multiply every comparison's operations per round (default 1)",
    )
    parser.add_argument(
        "--keys", type=int, default=None, help="keys in the main table (default 10000)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1000 keys, 2 rounds, a few operations per round (explicit options "
        "win); figures are not worth quoting",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also the scaling section: get at 1k/100k/1M keys, list paging through 100k, "
        "history queries on 1M history rows with EXPLAIN, feed catch-up after 1k/10k/100k "
        "missed changes (takes minutes; with --quick, tiny sizes)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated comparisons to run (e.g. 'get,cache'); default: all",
    )
    parser.add_argument("--skip", default="", help="comma-separated comparisons not to run")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="report path (benchmarks/RESULTS.md)"
    )
    parser.add_argument(
        "--dsn",
        default=None,
        help="use this database on an existing server instead of starting one; it is "
        "migrated, keys under 'bench.' are written to it and removed afterwards; memory and "
        "--scale create (and drop) databases of their own, which needs CREATEDB",
    )
    parser.add_argument("--seed", type=int, default=8, help="random seed for the key choice (8)")
    return parser


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"error: {type(exc).__name__}: {text[:300]}"


def _names(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}


def _measure(ctx: Context, name: str, setup: Setup, rounds: int) -> ComparisonResult:
    """Set up one comparison, run it, and close what it opened before the next one."""
    with ExitStack() as stack:
        ctx.stack = stack
        _progress(f"{name}: setting up")
        try:
            comparison = setup(ctx)
        except CaseUnavailableError as exc:
            return ComparisonResult(Comparison(name, name, [], 0), status=f"skipped: {exc}")
        except Exception as exc:  # one broken case must not lose the others' results
            return ComparisonResult(Comparison(name, name, [], 0), status=_error(exc))
        try:
            return run_comparison(comparison, rounds, progress=_progress)
        except Exception as exc:
            return ComparisonResult(comparison, status=_error(exc))


def _without_password(argv: list[str], dsn: str | None) -> list[str]:
    """The command line as the report quotes it: a --dsn by its host, port, database and
    user (settings.describe_dsn), never its password."""
    if dsn is None:
        return argv
    shown = describe_dsn(dsn)

    def quoted(word: str) -> str:
        if word == dsn:  # "--dsn X"
            return shown
        if word.endswith(f"={dsn}"):  # "--dsn=X", and argparse's abbreviations ("--ds=X")
            return word[: -len(dsn)] + shown
        return word

    return [quoted(word) for word in argv]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.keys is None:
        args.keys = 1000 if args.quick else 10_000
    if args.rounds is None:
        args.rounds = 2 if args.quick else 9
    if args.rounds < 1 or args.ops_scale <= 0 or args.keys < 100:
        parser.error("--rounds and --ops-scale must be positive, --keys at least 100")
    only, skip = _names(args.only), _names(args.skip)
    known = {name for name, _ in (*COMPARISONS, *SCALE_COMPARISONS)} | {"memory"}
    if unknown := (only | skip) - known:
        parser.error(f"unknown comparisons: {', '.join(sorted(unknown))}")

    def wanted(name: str) -> bool:
        return (not only or name in only) and name not in skip

    given = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "benchmarks", *_without_password(given, args.dsn)])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = time.monotonic()
    load_before = os.getloadavg()

    # Servers started here get CPUs of their own (benchmarks/_cpus.py); an existing
    # server's placement is not ours to choose.
    split = plan_split() if args.dsn is None else None
    pin_client(split)
    with ExitStack() as run_stack:
        _progress("starting PostgreSQL" if args.dsn is None else "using --dsn")
        server = run_stack.enter_context(target(args.dsn))
        with ConfigDAL(server.dsn) as dal:
            applied = dal.migrate()
        _progress(f"migrated ({len(applied)} applied); loading {args.keys:,} keys")
        keys = load_keys(server.dsn, args.keys)
        if not server.started_here:
            run_stack.callback(remove_keys, server.dsn)
        ctx = Context(server, keys, args.seed, run_stack, args.quick, args.ops_scale)

        results = [
            _measure(ctx, name, setup, args.rounds) for name, setup in COMPARISONS if wanted(name)
        ]
        memory: MemoryResult | None = None
        memory_status: str | None = "not run (--only / --skip)"
        if wanted("memory"):
            _progress("memory: filling a cache and a dict")
            try:
                with ExitStack() as stack:
                    ctx.stack = stack
                    memory, memory_status = measure_cache_memory(ctx), None
            except CaseUnavailableError as exc:
                memory_status = f"skipped: {exc}"
            except Exception as exc:
                memory_status = _error(exc)
        scale = None
        if args.scale:
            scale = [
                _measure(ctx, name, setup, args.rounds)
                for name, setup in SCALE_COMPARISONS
                if wanted(name)
            ]

        settings = server.server_facts()
        facts = machine_facts(settings)
        facts["Server"] = server.description + (
            f", data directory on {server.data_dir_filesystem}"
            if server.data_dir_filesystem
            else ""
        )
        facts["Durability"] = ", ".join(
            f"`{k} = {v}`" for k, v in settings.items() if k != "server_version"
        )
        triggers = server.triggers()
        facts["Triggers on the table"] = (
            ", ".join(f"`{t}`" for t in triggers) + " (they fire for the raw upserts too)"
            if triggers
            else "none"
        )
        facts["Data"] = (
            f"{args.keys:,} keys in the main table (a fifth each str, int, float, bool, json), "
            f"seed {args.seed}"
        )
        facts.update(ctx.facts)
        load = os.getloadavg()
        facts["Load average (1 / 5 / 15 min)"] = (
            f"{' / '.join(f'{v:.2f}' for v in load_before)} at start, "
            f"{' / '.join(f'{v:.2f}' for v in load)} at end (on 2 cores anything above ~1 is "
            "other work competing with the benchmark: see the min–max spreads)"
        )
        facts["CPUs"] = (
            split.describe()
            if split is not None
            else "not pinned (an existing server, or fewer than 2 CPUs): the scheduler places "
            "client and server, and round trips vary with where it puts them"
        )
        facts["Duration"] = f"{time.monotonic() - started:.0f} s"

    run = Run(
        command=command,
        date=date,
        rounds=args.rounds,
        facts=facts,
        results=results,
        scale=scale,
        memory=memory,
        memory_status=memory_status,
        quick=args.quick,
    )
    report = render(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)
    _progress(f"wrote {args.output} in {time.monotonic() - started:.0f} s")
    return 0
