"""The command line: set up the server, run every case in turn, write the report."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from amira_data_access import ConfigDAL

from ._breakdown import Breakdown, measure_breakdown
from ._cases import BATCH_SIZES, CASES, Case, Context, Measure, NotLandedError
from ._report import CaseResult, Run, format_budget, machine_facts, render
from ._server import load_keys, remove_keys, target
from ._timing import Budget

__all__ = ["main"]

DEFAULT_OUTPUT = Path(__file__).parent / "RESULTS.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Measure ConfigDAL against raw psycopg, connect-per-call and pgbench on a durable "
            "throwaway PostgreSQL (or --dsn), and write a Markdown report."
        ),
    )
    parser.add_argument("--keys", type=int, default=None, help="keys to load (default 10000)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats per case; the median is reported (5)"
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--seconds", type=float, default=None, help="seconds per measurement (default 2.5)"
    )
    length.add_argument("--ops", type=int, default=None, help="operations per measurement")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes for a smoke test: 1000 keys, 1 repeat, 0.2 s (explicit options win)",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="report path (benchmarks/RESULTS.md)"
    )
    parser.add_argument(
        "--dsn",
        default=None,
        help="use this database on an existing server instead of starting one; it is "
        "migrated, keys under 'bench.' are written to it and removed afterwards",
    )
    parser.add_argument("--seed", type=int, default=8, help="random seed for the key choice (8)")
    parser.add_argument(
        "--cases",
        default="",
        help="comma-separated case-key prefixes to run (e.g. 'get.,set.'); default: all",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the where-the-time-goes breakdown"
    )
    return parser


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _selected(pattern: str) -> list[Case]:
    prefixes = [p.strip() for p in pattern.split(",") if p.strip()]
    return [c for c in CASES if not prefixes or any(c.key.startswith(p) for p in prefixes)]


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"error: {type(exc).__name__}: {text[:200]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the process exit status."""
    args = _parser().parse_args(argv)
    # Options left out take the --quick sizes or the defaults; explicit ones always win.
    if args.keys is None:
        args.keys = 1000 if args.quick else 10_000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.seconds is None and args.ops is None:
        args.seconds = 0.2 if args.quick else 2.5
    if args.keys < max(BATCH_SIZES):
        _parser().error(f"--keys must be at least {max(BATCH_SIZES)} (the get_many batch)")
    if args.repeats < 1 or (args.ops is not None and args.ops < 1):
        _parser().error("--repeats and --ops must be positive")

    budget = Budget(seconds=args.seconds, ops=args.ops)
    warmup = (
        Budget(ops=min(args.ops, 200))
        if args.ops is not None
        else Budget(seconds=min(1.0, max(0.1, args.seconds / 3)))
    )
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = time.monotonic()
    load_before = os.getloadavg()

    results: dict[str, CaseResult] = {}
    breakdown: Breakdown | None = None
    breakdown_error: str | None = "skipped (--no-profile)" if args.no_profile else None
    with ExitStack() as stack:
        _progress("starting PostgreSQL" if args.dsn is None else "using --dsn")
        server = stack.enter_context(target(args.dsn))
        dal = ConfigDAL(server.dsn)
        try:
            applied = dal.migrate()
        finally:
            dal.close()
        _progress(f"migrated ({len(applied)} applied); loading {args.keys:,} keys")
        keys = load_keys(server.dsn, args.keys)
        if not server.started_here:
            stack.callback(remove_keys, server.dsn)
        context = Context(server, keys, args.seed, stack)

        measures: dict[str, Measure] = {}
        for case in _selected(args.cases):
            results[case.key] = CaseResult(case, [])
            try:
                measures[case.key] = case.setup(context)
            except NotLandedError as exc:
                results[case.key].status = f"not available yet: {exc}"
            except Exception as exc:  # one broken case must not lose the others' results
                results[case.key].status = _error(exc)

        for key, measure in list(measures.items()):
            if results[key].case.warmup:
                try:
                    measure(warmup)
                except Exception as exc:
                    results[key].status = _error(exc)
                    del measures[key]

        for repeat in range(1, args.repeats + 1):
            _progress(f"repeat {repeat}/{args.repeats}")
            for key, measure in list(measures.items()):
                try:
                    results[key].samples.append(measure(budget))
                except Exception as exc:
                    results[key].status = _error(exc)
                    del measures[key]

        if not args.no_profile:
            _progress("profiling ConfigDAL.get")
            quick = args.quick
            try:
                breakdown = measure_breakdown(
                    server.dsn,
                    context.key_stream(),
                    # Five variants share this time, one operation each in turn.
                    seconds=1.0 if quick else max(1.0, (args.seconds or 2.5) * 6),
                    calls=2_000 if quick else 50_000,
                    gets=200 if quick else 5_000,
                )
            except Exception as exc:
                breakdown_error = _error(exc)

        settings = server.server_facts()
        triggers = server.triggers()
        facts = machine_facts(settings)
        facts["Server"] = server.description + (
            f", data directory on {server.data_dir_filesystem}"
            if server.data_dir_filesystem
            else ""
        )
        facts["Data"] = (
            f"{args.keys:,} keys (a mix of str, int, float, bool, json), seed {args.seed}"
        )
        facts["Triggers on the table"] = (
            ", ".join(f"`{t}`" for t in triggers)
            + " (they fire for the bare upsert too: the set ratio is the layer's own cost)"
            if triggers
            else "none"
        )
        load = os.getloadavg()
        facts["Load average"] = (
            f"{load_before[0]:.2f} at start, {load[0]:.2f} at end (1 min; other work on the "
            "machine shows here and in the min–max spread)"
        )
        if context.pgbench_command:
            facts["pgbench"] = f"`{context.pgbench_command}` after `pgbench -i -s 1` "
            facts["pgbench"] += "into a separate database on the same server"

    run = Run(
        command=command,
        date=date,
        results=results,
        facts=facts,
        settings=settings,
        repeats=args.repeats,
        budget_text=format_budget(
            args.seconds,
            args.ops,
            f"{warmup.ops} op" if warmup.ops is not None else f"{warmup.seconds:.2g} s",
        ),
        breakdown=breakdown,
        breakdown_error=breakdown_error,
    )
    report = render(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)
    _progress(f"wrote {args.output} in {time.monotonic() - started:.0f} s")
    return 0
