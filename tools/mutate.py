#!/usr/bin/env python
"""Mutation testing: change the code one small way at a time and see whether a test notices.

A test suite pins behaviour only if breaking the behaviour fails a test. This
tool makes each mutant in a scratch copy of the repository (the working tree is
never touched), runs the tests that cover the mutated file, and reports the
mutants no test killed: each is a behaviour to pin with a test, or an
equivalent change to argue away.

Python mutants (an AST transform of one node): comparison and boolean operators
swapped, ``not`` dropped, a condition negated, ``True``/``False`` and small
integers changed, a ``return`` of a value made ``return None``, a call statement
removed (``op.wrote(entry)``, ``cache.reset()``). An async source's mutant is
carried into its generated sync twin (``tools/async_to_sync.py``), so the sync
tests see it too. Mutants on lines the tests never run are counted apart
("not reached"): the score is killed / reached.

SQL mutants (``--sql``), in ``queries/`` and ``migrations/``: comparisons
swapped, a transaction-local ``set_config(..., true)`` made session-wide, an
``AND`` condition dropped, ``NOT EXISTS`` made ``EXISTS``, a ``CHECK`` made to
pass everything, a trigger's assignment removed. They run against the
integration tests on a real server (slow: a minute or two each).

    python tools/mutate.py                       # the core and the cache
    python tools/mutate.py src/amira_data_access/codec.py --tests tests/unit
    python tools/mutate.py --sql --limit 30      # a sample of the SQL mutants
    python tools/mutate.py --list                # what would be tried, no run

``just mutate`` runs the first form. Not in CI: it takes an hour or more.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path("src/amira_data_access")

# What each target is tested by (the fast tests that reach it; -x stops at the first failure).
CORE = "tests/unit tests/contract -k memory"
CACHE = (
    "tests/unit/test_cache_logic.py tests/integration/test_specification.py "
    "tests/integration/test_async_cache.py tests/integration/test_watch_and_cache.py "
    "tests/contract/test_contract.py -k cached"
)
TARGETS: dict[str, str] = {
    "src/amira_data_access/core/operations.py": CORE,
    "src/amira_data_access/core/running.py": CORE,
    "src/amira_data_access/core/arguments.py": CORE,
    "src/amira_data_access/core/retry.py": "tests/unit",
    "src/amira_data_access/core/statements.py": CORE,
    "src/amira_data_access/errors.py": "tests/unit",
    "src/amira_data_access/feed/cache_state.py": CACHE,
    "src/amira_data_access/feed/cache_async.py": CACHE,
}
SQL_TESTS = (
    "tests/integration/test_specification.py tests/integration/test_dal.py "
    "tests/integration/test_history.py tests/integration/test_concurrency.py "
    "tests/contract/test_fake_matches_postgres.py tests/contract/test_contract.py -k sync_dal"
)
# The generated twin of each hand-written async module (a mutant is regenerated into it).
TWINS = {
    "src/amira_data_access/feed/cache_async.py": "src/amira_data_access/feed/cache.py",
    "src/amira_data_access/dal_async.py": "src/amira_data_access/dal.py",
    "src/amira_data_access/memory_async.py": "src/amira_data_access/memory.py",
}


@dataclass(frozen=True)
class Mutant:
    """One change: where, what, and the whole mutated text of the file."""

    path: str
    line: int
    description: str
    text: str


# -- Python mutants ------------------------------------------------------------------------

_COMPARISONS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (never mutated)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _mutations_of(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """(description, replacement node) for each way to change ``node``."""
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            swapped = _COMPARISONS.get(type(op))
            if swapped is not None:
                new = copy.deepcopy(node)
                new.ops[index] = swapped()
                yield f"{type(op).__name__} -> {swapped.__name__}", new
    elif isinstance(node, ast.BoolOp):
        other: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        new_bool = copy.deepcopy(node)
        new_bool.op = other
        yield f"{type(node.op).__name__} -> {type(other).__name__}", new_bool
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not x -> x", copy.deepcopy(node.operand)
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        yield f"{node.value} -> {not node.value}", ast.Constant(not node.value)
    elif isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) < 10_000:
        yield f"{node.value} -> {node.value + 1}", ast.Constant(node.value + 1)
        if node.value != 0:
            yield f"{node.value} -> 0", ast.Constant(0)
    elif isinstance(node, ast.If | ast.While):
        new_if = copy.deepcopy(node)
        new_if.test = ast.UnaryOp(ast.Not(), copy.deepcopy(node.test))
        yield "condition negated", new_if
    elif isinstance(node, ast.Return) and node.value is not None:
        # Not for a falsy constant: None would be the same answer wherever the result is
        # tested for truth (an equivalent mutant, not a gap in the tests).
        if not (isinstance(node.value, ast.Constant) and not node.value.value):
            yield "return value -> None", ast.Return(ast.Constant(None))
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
        yield "call removed", ast.Pass()
    elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add | ast.Sub):
        new_aug = copy.deepcopy(node)
        new_aug.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        yield "+= <-> -=", new_aug


def python_mutants(path: str) -> Iterator[Mutant]:
    """Every mutant of one Python file (docstrings, type annotations and imports left alone)."""
    source = (ROOT / path).read_text()
    tree = ast.parse(source)
    skip = _docstring_nodes(tree)
    annotations: set[int] = set()
    for node in ast.walk(tree):
        for child in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if child is not None:
                annotations.update(id(n) for n in ast.walk(child))
        if isinstance(node, ast.Import | ast.ImportFrom):
            annotations.update(id(n) for n in ast.walk(node))
    for node in list(ast.walk(tree)):
        if id(node) in skip or id(node) in annotations or not hasattr(node, "lineno"):
            continue
        for description, replacement in _mutations_of(node):
            mutated = _replace_at(tree, node, replacement)
            yield Mutant(path, node.lineno, description, ast.unparse(mutated))


def _replace_at(tree: ast.Module, node: ast.AST, replacement: ast.AST) -> ast.Module:
    """A copy of ``tree`` with ``node`` replaced (located by its identity in ``tree``)."""
    memo: dict[int, object] = {id(node): ast.copy_location(replacement, node)}
    return copy.deepcopy(tree, memo)


# -- SQL mutants -----------------------------------------------------------------------------

_SQL_RULES: list[tuple[str, re.Pattern[str], str]] = [
    (
        "set_config(..., true) -> false",
        re.compile(r"(set_config\([^;]*?),\s*true\)"),
        r"\1, false)",
    ),
    ("NOT EXISTS -> EXISTS", re.compile(r"\bNOT EXISTS\b"), "EXISTS"),
    ("CHECK passes everything", re.compile(r"\bCHECK \("), "CHECK (true OR "),
    (">= -> >", re.compile(r"(?<![<>!])>=(?!=)"), ">"),
    ("< -> <=", re.compile(r"(?<![<>!-])<(?![=>-])"), "<="),
    ("= -> <>", re.compile(r"(?<=\s)=(?=\s)"), "<>"),
    ("AND condition dropped", re.compile(r"^(\s*)AND [^\n]*$", re.MULTILINE), r"\1AND true"),
    (
        "trigger assignment removed",
        re.compile(r"^(\s*)NEW\.\w+ := [^\n]*;$", re.MULTILINE),
        r"\1NULL;",
    ),
]


def sql_mutants(path: str) -> Iterator[Mutant]:
    """Every SQL mutant of one file: one rule applied at one place."""
    text = (ROOT / path).read_text()
    for description, pattern, replacement in _SQL_RULES:
        for match in pattern.finditer(text):
            if _in_comment(text, match.start()):
                continue
            mutated = text[: match.start()] + match.expand(replacement) + text[match.end() :]
            line = text.count("\n", 0, match.start()) + 1
            yield Mutant(path, line, description, mutated)


def _in_comment(text: str, position: int) -> bool:
    line_start = text.rfind("\n", 0, position) + 1
    return "--" in text[line_start:position]


# -- running ---------------------------------------------------------------------------------


def _scratch_copy() -> Path:
    """A copy of the tracked files of the working tree, to mutate."""
    scratch = Path(tempfile.mkdtemp(prefix="amira-mutate-"))
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = scratch / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return scratch


def _reached_lines(scratch: Path, path: str, tests: str) -> set[int] | None:
    """The lines of ``path`` the tests run (coverage), or None if coverage is not installed."""
    if importlib.util.find_spec("coverage") is None:  # optional: to know what is reached
        return None
    data = scratch / ".coverage.mutate"
    subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--data-file={data}", "-m", "pytest",
         "-q", "-p", "no:cacheprovider", *tests.split()],
        cwd=scratch, env=_env(scratch), capture_output=True, check=False,
    )  # fmt: skip
    report = subprocess.run(
        [sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", "-",
         f"--include=*/{path}"],
        cwd=scratch, env=_env(scratch), capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        files = json.loads(report.stdout)["files"]
    except (json.JSONDecodeError, KeyError):
        return None
    for name, content in files.items():
        if name.endswith(path):
            return set(content["executed_lines"])
    return set()


def _env(scratch: Path) -> dict[str, str]:
    # The scratch copy's src comes before the editable install's path.
    return {**os.environ, "PYTHONPATH": str(scratch / "src"), "HYPOTHESIS_PROFILE": "ci"}


def _killed(scratch: Path, mutant: Mutant, tests: str, timeout: float) -> bool:
    target = scratch / mutant.path
    original = target.read_text()
    twin = TWINS.get(mutant.path)
    twin_original = (scratch / twin).read_text() if twin else None
    target.write_text(mutant.text)
    try:
        if twin is not None:
            generated = subprocess.run(
                [sys.executable, "tools/async_to_sync.py", mutant.path],
                cwd=scratch, env=_env(scratch), capture_output=True, check=False,
            )  # fmt: skip
            if generated.returncode != 0:
                return True  # the twin cannot even be generated: caught before any test
        try:
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                 *tests.split()],
                cwd=scratch, env=_env(scratch), capture_output=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return True  # a hang is noticed too
        return run.returncode != 0
    finally:
        target.write_text(original)
        if twin is not None and twin_original is not None:
            (scratch / twin).write_text(twin_original)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="files to mutate (default: the core and cache)")
    parser.add_argument("--tests", help="the pytest arguments that test them")
    parser.add_argument("--sql", action="store_true", help="mutate queries/ and migrations/")
    parser.add_argument("--limit", type=int, help="try at most N mutants (a random sample)")
    parser.add_argument("--seed", type=int, default=8, help="for --limit's sample")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant run")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--report", type=Path, help="write the results as JSON here too")
    options = parser.parse_args(argv)

    if options.sql:
        paths = options.paths or sorted(
            str(p.relative_to(ROOT))
            for p in [*ROOT.glob("queries/*.sql"), *ROOT.glob("migrations/*.sql")]
        )
        plan = [(m, options.tests or SQL_TESTS) for p in paths for m in sql_mutants(p)]
    else:
        paths = options.paths or list(TARGETS)
        plan = [
            (m, options.tests or TARGETS.get(p, CORE)) for p in paths for m in python_mutants(p)
        ]
    if options.limit is not None and len(plan) > options.limit:
        plan = random.Random(options.seed).sample(plan, options.limit)  # noqa: S311
        plan.sort(key=lambda item: (item[0].path, item[0].line))
    if options.list:
        for mutant, _ in plan:
            print(f"{mutant.path}:{mutant.line}: {mutant.description}")
        print(f"{len(plan)} mutants")
        return 0

    scratch = _scratch_copy()
    results: list[dict[str, object]] = []
    try:
        reached: dict[str, set[int] | None] = {}
        started = time.monotonic()
        for number, (mutant, tests) in enumerate(plan, 1):
            if not options.sql and mutant.path not in reached:
                reached[mutant.path] = _reached_lines(scratch, mutant.path, tests)
            lines = reached.get(mutant.path)
            if lines is not None and mutant.line not in lines:
                outcome = "not reached"
            else:
                outcome = (
                    "killed" if _killed(scratch, mutant, tests, options.timeout) else "SURVIVED"
                )
            results.append({"path": mutant.path, "line": mutant.line,
                            "mutation": mutant.description, "outcome": outcome})  # fmt: skip
            print(f"[{number}/{len(plan)}] {outcome:11s} {mutant.path}:{mutant.line}: "
                  f"{mutant.description}", flush=True)  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    killed = sum(r["outcome"] == "killed" for r in results)
    survived = [r for r in results if r["outcome"] == "SURVIVED"]
    reached_count = killed + len(survived)
    score = killed / reached_count if reached_count else 1.0
    print(f"\n{killed} killed, {len(survived)} survived, "
          f"{len(results) - reached_count} not reached: {score:.1%} of reached mutants killed "
          f"({elapsed / 60:.1f} min)")  # fmt: skip
    for r in survived:
        print(f"  survivor: {r['path']}:{r['line']}: {r['mutation']}")
    if options.report is not None:
        options.report.write_text(json.dumps({"score": score, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
