"""Feature flags: evaluations per second in one process, and a change's propagation.

``python -m benchmarks.flags [--dsn DSN] [--rounds N]`` (default: a durable throwaway
local cluster, 9 rounds) prints two tables in the format of benchmarks/RESULTS.md:

* **evaluation**: ``CachedConfigDAL.evaluate`` of a flag with 10 rules and 3 variants
  (a context no rule matches, so every rule is tested, then the 3-way split picks),
  the same flag's pure :class:`~amira_data_access.flags.CompiledFlag` ``evaluate`` (no
  store), and a plain ``dict`` lookup (the anchor): alternating, rotated rounds
  (benchmarks/_timing.py), so all three are measured in the same seconds.
* **propagation**: a flag changed by this process (``ConfigDAL.set``) until another
  process (a ``CachedConfigDAL`` subscribed to the change feed) evaluates the new
  version: from just before the writer's ``set`` to the reader's evaluation, both on
  ``CLOCK_MONOTONIC`` (one clock for every process of the machine).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks._cpus import pin_client, plan_split
from benchmarks._server import target
from benchmarks._timing import (
    Comparison,
    ComparisonResult,
    Contender,
    percentile,
    run_comparison,
)

FLAG = "bench.flags.model"
PER_STEP = 100
SINCE_COMMIT: list[int] = []  # ns from the writer's set() returning to the reader's evaluation


def flag_document(version: int = 0) -> dict[str, Any]:
    """10 rules (none matching the benchmark's context), 3 variants, a 3-way split."""
    rules = [
        {
            "if": [
                {"attribute": "country", "op": "in", "values": [f"X{n}", f"Y{n}"]},
                {"attribute": "app_version", "op": "semver_gte", "value": f"{n + 5}.0.0"},
            ],
            "variant": ("a", "b", "c")[n % 3],
        }
        for n in range(10)
    ]
    return {
        "enabled": True,
        "variants": {"a": "model-a", "b": "model-b", "c": f"model-c-{version}"},
        "defaultVariant": "a",
        "rules": rules,
        "rollout": [
            {"variant": "a", "weight": 50},
            {"variant": "b", "weight": 30},
            {"variant": "c", "weight": 20},
        ],
    }


def evaluation(dsn: str, ops: int) -> Comparison:
    """evaluate() from the cache, the pure evaluator, and a dict lookup (anchor)."""
    from amira_data_access import CachedConfigDAL
    from amira_data_access.flags import compile_flag
    from benchmarks._cases import wait_for_feed

    store = CachedConfigDAL(dsn, max_size=2)
    store.open()
    wait_for_feed(store)
    store.set(FLAG, flag_document(), data_type="flag", updated_by="benchmarks")
    compiled = compile_flag(FLAG, flag_document())
    users = itertools.cycle(
        [
            {"targetingKey": f"user-{n}", "country": "FR", "app_version": "2.1.0"}
            for n in range(1000)
        ]
    )
    plain = {FLAG: "model-b", "other": 1}

    # PER_STEP operations per timed step: one evaluation is too short for two clock reads.
    def cached() -> object:
        for _ in range(PER_STEP):
            store.evaluate(FLAG, next(users))
        return None

    def pure() -> object:
        for _ in range(PER_STEP):
            compiled.evaluate(next(users))
        return None

    def lookup() -> object:
        found = None
        for _ in range(PER_STEP):
            next(users)  # the same iteration cost as the others
            found = plain[FLAG]
        return found

    assert store.evaluate(FLAG, next(users)).reason == "SPLIT"
    return Comparison(
        "flags.evaluation",
        "Flag evaluation in one process (10 rules, 3 variants) vs a dict lookup",
        [
            Contender("dict", "`dict[key]` (anchor)", lookup, per_op=PER_STEP),
            Contender("pure", "`CompiledFlag.evaluate`", pure, anchor="dict", per_op=PER_STEP),
            Contender(
                "cached", "`CachedConfigDAL.evaluate`", cached, anchor="dict", per_op=PER_STEP
            ),
        ],
        ops=ops,
    )


CHILD = """
import sys, time
from amira_data_access import CachedConfigDAL
flag = sys.argv[2]
with CachedConfigDAL(sys.argv[1], max_size=2) as store:
    def changed(change):
        result = store.evaluate(flag, {"targetingKey": "user-1"})
        print(result.version, time.monotonic_ns(), flush=True)
    store.subscribe(changed, flag)
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes it
"""


def propagation(dsn: str, ops: int) -> tuple[Comparison, subprocess.Popen[str]]:
    """A change here until another process evaluates the new version."""
    from amira_data_access import ConfigDAL

    writer = ConfigDAL(dsn, max_size=2)
    writer.open()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, dsn, FLAG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    counter = itertools.count(1)

    def change() -> int:
        started = time.monotonic_ns()
        entry = writer.set(
            FLAG, flag_document(next(counter)), data_type="flag", updated_by="benchmarks"
        )
        committed = time.monotonic_ns()
        assert child.stdout is not None
        while True:
            version, seen = child.stdout.readline().split()
            if int(version) >= entry.version:
                SINCE_COMMIT.append(int(seen) - committed)
                return int(seen) - started

    comparison = Comparison(
        "flags.propagation",
        "Flag change here → evaluated in another process (change feed)",
        [
            Contender(
                "propagation", "`set` → other process's `evaluate` sees it", change, self_timed=True
            )
        ],
        ops=ops,
        warmup_ops=5,
    )
    return comparison, child


def _row(result: ComparisonResult, key: str) -> str:
    mine = result.results[key]
    ratio = mine.ratio()
    shown = "1" if ratio is None else f"{ratio.median:.1f} ({ratio.low:.1f}–{ratio.high:.1f})"
    ops, p50 = mine.ops_per_s, mine.p50_us
    return (
        f"| {mine.contender.label} | {ops.median:,.0f} ({ops.low:,.0f}–{ops.high:,.0f})"
        f" | {p50.median:.3f} ({p50.low:.3f}–{p50.high:.3f}) | {shown} |"
    )


def _compile_ms() -> float:
    from amira_data_access.flags import compile_flag

    times = []
    for n in range(20):
        document = flag_document(n)
        started = time.perf_counter_ns()
        compile_flag(FLAG, document)
        times.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(times)


def main() -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="an existing server (default: a throwaway local one)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=200, help="timed steps per case per round")
    args = parser.parse_args()
    split = plan_split() if args.dsn is None else None
    pin_client(split)  # as the main runner does (benchmarks/_cpus.py)
    if split is not None:
        print(f"CPUs: {split.describe()}.\n")
    with target(args.dsn) as server:
        from amira_data_access.migrations import migrate

        migrate(server.dsn)
        result = run_comparison(evaluation(server.dsn, args.ops), args.rounds)
        print(f"### {result.comparison.title}\n")
        print(f"{args.rounds} alternating rounds × {args.ops} steps of 100 operations per case;")
        print("median (min–max over rounds).\n")
        print("| case | evaluations/s | µs per evaluation (p50) | × dict |")
        print("|---|---|---|---|")
        for key in ("dict", "pure", "cached"):
            print(_row(result, key))
        comparison, child = propagation(server.dsn, max(args.ops // 4, 20))
        try:
            moved = run_comparison(comparison, args.rounds)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)
        mine = moved.results["propagation"]
        print(f"\n### {moved.comparison.title}\n")
        print(f"{args.rounds} rounds × {comparison.ops} changes; median (min–max over rounds).\n")
        print("| p50 ms | p99 ms |\n|---|---|")
        p50, p99 = mine.p50_us, mine.p99_us
        print(
            f"| {p50.median / 1000:.2f} ({p50.low / 1000:.2f}–{p50.high / 1000:.2f})"
            f" | {p99.median / 1000:.2f} ({p99.low / 1000:.2f}–{p99.high / 1000:.2f}) |"
        )
        since = sorted(SINCE_COMMIT)
        p50_ms, p99_ms = percentile(since, 0.5) / 1e6, percentile(since, 0.99) / 1e6
        print(
            f"\nFrom the writer's `set` returning instead (all rounds, warm-up included): "
            f"p50 {p50_ms:.2f} ms, p99 {p99_ms:.2f} ms."
        )
        compile_ms = _compile_ms()
        print(
            f"A new version is compiled once per process (JSON Schema check included): "
            f"{compile_ms:.2f} ms for this flag (median of 20)."
        )
        print(f"\nmachine: {os.cpu_count()} CPUs; server: {server.description}")


if __name__ == "__main__":
    main()
