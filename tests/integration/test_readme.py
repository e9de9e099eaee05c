"""Every ```python block of the README runs, in order, against a real database: it cannot rot.

Like a doctest of the whole file: the blocks share one namespace, as a reader
reading top to bottom would, in a Python process of their own (a block
configures logging for the whole process, as an application does; warnings are
errors there as under pytest), on one migrated test database, with
``AMIRA_CONFIG_DSN`` pointing at it (``from_env()`` and the seed's functions use
it). Before each block the names the README takes as given are put back:
``dsn``, ``config`` (an open ``ConfigDAL``; a block may close or replace its own)
and, in a block that awaits, ``async_config`` (an open ``AsyncConfigDAL`` on the
block's event loop). A block with top-level ``await``/``async with`` runs as a
coroutine. Each ``test_*`` function a block defines is called, as pytest would.
Stores a block leaves open are closed after it. Blocks that import FastAPI are
skipped, with the reason, only when FastAPI is not installed (the dev extra
installs it, so here they run; the app a block builds is also served once, with
TestClient, on the real database).
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amira_data_access import AsyncConfigDAL, CachedConfigDAL, ConfigDAL

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One ```python block: where it starts and its code."""

    line: int
    heading: str
    code: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.heading})"


def readme_blocks(text: str) -> list[Block]:
    """The README's python blocks in order, each with its line and the heading above it."""
    blocks: list[Block] = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 2  # the first line of code
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.MULTILINE)
        blocks.append(Block(line, headings[-1] if headings else "top", match.group(1)))
    return blocks


def test_the_readme_has_its_blocks() -> None:
    """The extraction finds the blocks (a broken fence would silently drop some)."""
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 10
    headings = {block.heading for block in blocks}
    assert {"Use it from a service", "Testing your service", "Migrations"} <= headings
    for block in blocks:
        ast.parse(block.code, filename=block.name)  # each one is Python on its own


def _compiled(block: Block) -> Any:
    # Line numbers as in the README, so a traceback points at the right line.
    source = "\n" * (block.line - 1) + block.code
    # dont_inherit: the README runs as a reader's module would, without this file's
    # `from __future__ import annotations` (pydantic models there resolve their fields).
    return compile(
        source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )


def _needs_fastapi(block: Block) -> bool:
    return bool(re.search(r"^\s*from fastapi\b|^\s*import fastapi\b", block.code, re.MULTILINE))


def _close_left_open(namespace: dict[str, Any], keep: set[int]) -> None:
    for value in list(namespace.values()):
        if id(value) in keep or not isinstance(value, ConfigDAL | CachedConfigDAL):
            continue
        value.close()


SKIPPED = "readme: skipped: "


def test_every_python_block_runs(dsn: str) -> None:
    """Each block, in README order, on one database; test_* functions it defines are run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD")
    }
    env["AMIRA_CONFIG_DSN"] = dsn
    done = subprocess.run(
        [sys.executable, "-W", "error", __file__],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    skipped = [line for line in done.stdout.splitlines() if line.startswith(SKIPPED)]
    if skipped:
        pytest.skip(skipped[0].removeprefix(SKIPPED))


def run_readme(dsn: str) -> list[str]:
    """Run every block (see the module docstring); the names of those skipped."""
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    have_fastapi = importlib.util.find_spec("fastapi") is not None
    namespace: dict[str, Any] = {"__name__": "readme"}
    skipped: list[str] = []
    with ConfigDAL(dsn) as config:
        for block in blocks:
            if _needs_fastapi(block) and not have_fastapi:
                skipped.append(block.name)
                continue
            namespace.update(dsn=dsn, config=config)
            before = set(namespace)
            code = _compiled(block)
            try:
                if code.co_flags & inspect.CO_COROUTINE:
                    asyncio.run(_run_async(code, namespace, dsn))
                else:
                    exec(code, namespace)  # noqa: S102  # the README's own code
                for name in sorted(set(namespace) - before):
                    function = namespace[name]
                    if name.startswith("test_") and callable(function):
                        function()
            except Exception as exc:
                raise AssertionError(f"{block.name} failed: {exc!r}") from exc
            finally:
                _close_left_open(namespace, keep={id(config)})
        if "create_app" in namespace:
            _serve_once(namespace["create_app"], config)
    return skipped


async def _run_async(code: Any, namespace: dict[str, Any], dsn: str) -> None:
    async with AsyncConfigDAL(dsn) as async_config:
        namespace["async_config"] = async_config
        result = eval(code, namespace)  # noqa: S307  # a coroutine: the README's own code
        if inspect.iscoroutine(result):
            await result


def _serve_once(create_app: Any, config: ConfigDAL) -> None:
    """The README's production app (create_app() with from_env) on the real database."""
    from fastapi.testclient import TestClient

    config.set("amira.chat.greeting", "Hello from PostgreSQL", updated_by="readme")
    with TestClient(create_app()) as client:
        assert client.get("/greeting").json() == {"text": "Hello from PostgreSQL"}


if __name__ == "__main__":  # the child process of test_every_python_block_runs
    left_out = run_readme(os.environ["AMIRA_CONFIG_DSN"])
    if left_out:
        print(f"{SKIPPED}FastAPI is not installed: did not run {', '.join(left_out)}")
