"""tools/async_to_sync.py: the generator of the sync twins, rule by rule, and its command line.

The transform itself (``to_sync``) is compared exactly on small snippets; the whole pipeline
(``generate``: header, ruff fixes and formatting, ruff check) runs with the repository's ruff
configuration; the command line runs on a throwaway tree with a pair table of its own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    # tools/ is no package: load the script by path (registered, for its dataclasses).
    spec = importlib.util.spec_from_file_location("async_to_sync", ROOT / "tools/async_to_sync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


a2s = _load_tool()


def sync(source: str) -> str:
    """Rules 1 to 4 on a dedented snippet."""
    return str(a2s.to_sync(textwrap.dedent(source), "snippet.py"))


def same(text: str) -> str:
    return textwrap.dedent(text)


def run(code: str) -> dict[str, Any]:
    """The globals of ``code`` once run: generated code must work, not only compile."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "<generated>", "exec"), namespace)  # noqa: S102 - our own snippets
    return namespace


# --- rule 1: async and await ---------------------------------------------------------------


def test_async_def_with_and_for_lose_async() -> None:
    source = """\
        @decorator(1)
        async def f(dal):
            async with dal.transaction() as tx:
                async for row in tx.rows():
                    print(row)
        """
    assert sync(source) == same("""\
        @decorator(1)
        def f(dal):
            with dal.transaction() as tx:
                for row in tx.rows():
                    print(row)
        """)


def test_async_with_several_items_and_async_comprehensions() -> None:
    source = """\
        async def f():
            async with a() as x, b() as y:
                return [r async for r in x], {k: v async for k, v in y}
        """
    assert sync(source) == same("""\
        def f():
            with a() as x, b() as y:
                return [r for r in x], {k: v for k, v in y}
        """)


def test_await_is_dropped_in_every_position() -> None:
    source = """\
        async def f(dal):
            await dal.open()
            value = await dal.get("k")
            print(await dal.get("a"), [await g(x) for x in value])
            return await dal.close()
        """
    assert sync(source) == same("""\
        def f(dal):
            dal.open()
            value = dal.get("k")
            print(dal.get("a"), [g(x) for x in value])
            return dal.close()
        """)


def test_async_generators_become_plain_generators_and_nested_functions_follow() -> None:
    source = """\
        async def gen(items):
            async def inner(x):
                return await x

            def plain(x):
                return x

            for item in items:
                yield await inner(plain(item))
        """
    assert sync(source) == same("""\
        def gen(items):
            def inner(x):
                return x

            def plain(x):
                return x

            for item in items:
                yield inner(plain(item))
        """)


def test_parentheses_made_redundant_by_dropping_await_go() -> None:
    source = """\
        async def f(cur):
            one = (await cur.execute(q)).fetchone()
            two = await (cur.fetchall())
            three = g((await cur.fetch()), await (h()))
            four = ("é", (await cur.get()).x)
            return(await cur.close())
        """
    assert sync(source) == same("""\
        def f(cur):
            one = cur.execute(q).fetchone()
            two = cur.fetchall()
            three = g(cur.fetch(), h())
            four = ("é", cur.get().x)
            return cur.close()
        """)


def test_parentheses_around_a_multiline_await_go_with_their_line_breaks() -> None:
    source = """\
        async def f(cur):
            return (
                await cur.execute(
                    query, params
                )
            ).fetchone()
        """
    assert sync(source) == same("""\
        def f(cur):
            return cur.execute(
                    query, params
                ).fetchone()
        """)


def test_parentheses_that_still_mean_something_stay() -> None:
    source = """\
        async def f(a, b, g):
            x = await (a or b)
            y = g(await a)
            z = (  # why this is awaited
                await a
            ).real
            w = (
                await a
                .imag
            )
            return x, y, z, w
        """
    assert sync(source) == same("""\
        def f(a, b, g):
            x = (a or b)
            y = g(a)
            z = (  # why this is awaited
                a
            ).real
            w = (
                a
                .imag
            )
            return x, y, z, w
        """)


def test_line_continuations_survive() -> None:
    source = """\
        async def f(dal):
            value = await \\
                dal.get("k")
            async with \\
                    dal.transaction():
                return value
        """
    assert sync(source) == same("""\
        def f(dal):
            value = dal.get("k")
            with \\
                    dal.transaction():
                return value
        """)


def test_with_nested_in_with_is_merged_comments_moved_into_the_header() -> None:
    source = """\
        async def f(a, b, c):
            with a() as x:
                async with b(x) as y:
                    async with c():
                        return y
            with a():  # why a
                # why b
                async with b():  # and after it
                    # the body's own comment
                    s = '''
                      text
                    '''
            with a():
                x = 1
                async with b():
                    pass
        """
    assert sync(source) == same("""\
        def f(a, b, c):
            with (a() as x, b(x) as y, c()):
                return y
            with (
                a(),  # why a
                # why b
                b(),  # and after it
            ):
                # the body's own comment
                s = '''
                      text
                    '''
            with a():
                x = 1
                with b():
                    pass
        """)


def test_with_items_holding_a_comment_are_not_merged() -> None:
    source = """\
        async def f(a, b):
            with a(
                1,  # one
            ):
                async with b():
                    pass
        """
    assert sync(source) == same("""\
        def f(a, b):
            with a(
                1,  # one
            ):
                with b():
                    pass
        """)


def test_await_inside_an_f_string_is_refused_with_its_line() -> None:
    source = """\
        async def f(dal):
            return f"value: {await dal.get('k')}"
        """
    with pytest.raises(a2s.GenerationError, match=r"snippet\.py:2: `await` inside an f-string"):
        sync(source)


# --- rule 2: names ------------------------------------------------------------------------


def test_names_are_renamed_as_identifiers_attributes_and_imports() -> None:
    source = """\
        from contextlib import AsyncExitStack, asynccontextmanager
        from ._acompat import ASYNC
        from .dal_async import AsyncConfigDAL


        class AsyncChangeStream(AsyncIterator[int]):
            async def __aenter__(self) -> AsyncChangeStream:
                return self

            async def __anext__(self) -> int:
                raise StopAsyncIteration

            @asynccontextmanager
            async def stack(self) -> AsyncIterator[AsyncExitStack]:
                async with AsyncExitStack() as stack:
                    yield stack
                await self.pool.aclose()
        """
    assert sync(source) == same("""\
        from contextlib import ExitStack, contextmanager
        from ._compat import ASYNC
        from .dal import ConfigDAL


        class ChangeStream(Iterator[int]):
            def __enter__(self) -> ChangeStream:
                return self

            def __next__(self) -> int:
                raise StopIteration

            @contextmanager
            def stack(self) -> Iterator[ExitStack]:
                with ExitStack() as stack:
                    yield stack
                self.pool.close()
        """)


def test_only_whole_names_are_renamed() -> None:
    source = """\
        import asyncio
        async_mode = AsyncConfigDALs = my_AsyncConfigDAL = AsyncConfigDAL_v2 = 1
        asyncio.run(main(async_mode))
        """
    assert sync(source) == same(source)


def test_adding_a_name_is_one_entry_in_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(a2s.NAMES, "AsyncWidget", "Widget")
    source = """\
        # An AsyncWidget.
        w: AsyncWidget = make("AsyncWidget")
        """
    assert sync(source) == same("""\
        # An Widget.
        w: Widget = make("Widget")
        """)


# --- rule 3: comments and strings ---------------------------------------------------------


def test_names_in_docstrings_comments_and_string_annotations() -> None:
    source = '''\
        """The AsyncConfigDAL (see :mod:`amira_data_access.dal_async`): an AsyncIterator."""


        def f(dal: "AsyncConfigDAL") -> "AsyncIterator[AsyncConfigTransaction]":
            # The AsyncConnectionPool is opened by AsyncConfigDAL.open().
            return g(dal, "dal_async.f")
        '''
    assert sync(source) == same('''\
        """The ConfigDAL (see :mod:`amira_data_access.dal`): an Iterator."""


        def f(dal: "ConfigDAL") -> "Iterator[ConfigTransaction]":
            # The ConnectionPool is opened by ConfigDAL.open().
            return g(dal, "dal.f")
        ''')


def test_async_and_await_go_from_code_in_docstrings() -> None:
    source = '''\
        def f():
            """Use ``async with dal.transaction() as tx:`` then ``await tx.get(k)``.

            Open it first (``await dal.open()`` or ``async with``), then ``await stream``::

                async with dal.watch("a.") as changes:
                    async for change in changes:
                        await handle(change)

            >>> await dal.get("k")
            >>> await stream
            """
        '''
    assert sync(source) == same('''\
        def f():
            """Use ``with dal.transaction() as tx:`` then ``tx.get(k)``.

            Open it first (``dal.open()`` or ``with``), then ``stream``::

                with dal.watch("a.") as changes:
                    for change in changes:
                        handle(change)

            >>> dal.get("k")
            >>> stream
            """
        ''')


def test_async_and_await_stay_in_prose() -> None:
    source = '''\
        def f():
            """We await the lock: an async service uses asyncio; async_mode and awaits stay."""
            # Do not await it twice; the async with block and async for loop are prose here.
        '''
    assert sync(source) == same(source)


def test_comments_lose_async_and_await_before_code() -> None:
    source = """\
        def f():
            # await pool.open() first, and async with pool.connection() as conn: after.
            pass
        """
    assert sync(source) == same("""\
        def f():
            # pool.open() first, and with pool.connection() as conn: after.
            pass
        """)


# --- rule 4: if ASYNC ----------------------------------------------------------------------


def test_if_async_keeps_its_else_branch_dedented() -> None:
    source = """\
        async def pause(delay):
            if ASYNC:
                await asyncio.sleep(delay)
            else:
                time.sleep(delay)
                log(delay)
            return delay
        """
    assert sync(source) == same("""\
        def pause(delay):
            time.sleep(delay)
            log(delay)
            return delay
        """)


def test_if_async_without_else_disappears() -> None:
    source = """\
        async def f(pool):
            prepare()
            if ASYNC:
                await pool.open()
            return pool
        """
    assert sync(source) == same("""\
        def f(pool):
            prepare()
            return pool
        """)


def test_if_async_alone_in_its_block_leaves_pass() -> None:
    source = """\
        async def f(pool):
            if ASYNC:
                await pool.open()
            if ASYNC:
                await pool.wait()
        """
    assert sync(source) == same("""\
        def f(pool):
            pass
        """)


def test_comments_go_with_their_branch() -> None:
    source = """\
        async def f(pool):
            # Before the statement: belongs to what follows, kept.
            if ASYNC:  # the marker line goes
                # async only: dropped
                await pool.open()
                # still the async branch: dropped
            else:  # the else line goes
                # sync only: kept
                pool.open(wait=True)

                # the end of the sync branch: kept
            # after the statement: kept
            return pool
        """
    assert sync(source) == same("""\
        def f(pool):
            # Before the statement: belongs to what follows, kept.
            # sync only: kept
            pool.open(wait=True)

            # the end of the sync branch: kept
            # after the statement: kept
            return pool
        """)


def test_nested_if_async_in_the_kept_branch_and_in_a_class() -> None:
    source = """\
        class C:
            if ASYNC:
                lock = asyncio.Lock()
            else:
                lock = threading.Lock()
                if ASYNC:
                    never = 1
                else:
                    # nested sync
                    kept = 2

            async def m(self):
                if ASYNC:
                    if ASYNC:
                        dropped = 1
                    else:
                        dropped_too = 1
                else:
                    return 3
        """
    assert sync(source) == same("""\
        class C:
            lock = threading.Lock()
            # nested sync
            kept = 2

            def m(self):
                return 3
        """)


def test_kept_branch_multiline_strings_keep_their_value() -> None:
    source = '''\
        def f():
            if ASYNC:
                q = 1
            else:
                q = """
                    SELECT 1
                """
            return q
        '''
    result = sync(source)
    assert result == same('''\
        def f():
            q = """
                    SELECT 1
                """
            return q
        ''')
    assert run(result)["f"]() == run("ASYNC = False\n" + textwrap.dedent(source))["f"]()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "if ASYNC:\n    a = 1\nelif other:\n    a = 2\n",
            r"snippet\.py:1: `elif` after `if ASYNC:` is not supported",
        ),
        (
            "if other:\n    a = 1\nelif ASYNC:\n    a = 2\n",
            r"snippet\.py:3: `elif ASYNC:` is not supported",
        ),
        ("if not ASYNC:\n    a = 1\n", r"snippet\.py:1: ASYNC may only be used as `if ASYNC:`"),
        ("a = 1 if ASYNC else 2\n", r"snippet\.py:1: ASYNC may only be used as `if ASYNC:`"),
        ("if ASYNC: a = 1\n", r"snippet\.py:1: put the body of `if ASYNC:` on its own lines"),
        ("x = 1\nif ASYNC:\n    a = 1\nelse: a = 2\n", r"snippet\.py:2: .* `else:` on its own"),
    ],
)
def test_unsupported_markers_are_refused_with_file_and_line(source: str, message: str) -> None:
    with pytest.raises(a2s.GenerationError, match=message):
        sync(source)


# --- the whole pipeline: ruff, header ------------------------------------------------------

GENERATED = "src/amira_data_access/_twin_for_tests.py"  # never written: ruff reads stdin


def test_generate_sorts_prunes_imports_reflows_and_heads_the_file() -> None:
    source = '''\
        """The AsyncThing module: ``await thing()``."""

        from __future__ import annotations

        import asyncio
        import time
        from collections.abc import AsyncIterator, Callable

        from ._acompat import ASYNC
        from ._locks import Lock
        from .store_async import AsyncConfigStore


        async def pause(
            store: AsyncConfigStore, other: Lock, delay: Callable[[], float]
        ) -> AsyncIterator[float]:
            if ASYNC:
                await asyncio.sleep(delay())
            else:
                time.sleep(delay())
            yield await store.get_something_with_a_long_name(
                "first argument", "second"
            )
            async with store.transaction() as tx, store.lock():
                async with other():
                    await tx.set("k", 1)
            yield len([row async for row in store.rows()])
        '''
    result = a2s.generate(textwrap.dedent(source), "src/pkg/thing_async.py", GENERATED, ROOT)
    assert result == same('''\
        # GENERATED from src/pkg/thing_async.py by tools/async_to_sync.py: do not edit.
        # Edit the source, then run `just generate`.
        """The AsyncThing module: ``thing()``."""

        from __future__ import annotations

        import time
        from collections.abc import Callable, Iterator

        from ._locks import Lock
        from .store import ConfigStore


        def pause(store: ConfigStore, other: Lock, delay: Callable[[], float]) -> Iterator[float]:
            time.sleep(delay())
            yield store.get_something_with_a_long_name("first argument", "second")
            with store.transaction() as tx, store.lock(), other():
                tx.set("k", 1)
            yield len(list(store.rows()))
        ''')
    compile(result, GENERATED, "exec")


def test_the_header_fits_the_line_length_and_is_not_transformed() -> None:
    lines = a2s.header("src/amira_data_access/feed/cache_async.py").splitlines()
    assert lines == [
        "# GENERATED from src/amira_data_access/feed/cache_async.py by tools/async_to_sync.py:"
        " do not edit.",
        "# Edit the source, then run `just generate`.",
    ]
    assert all(len(line) <= a2s.LINE_LENGTH for line in lines)
    with pytest.raises(a2s.GenerationError, match="path too long"):
        a2s.header("src/" + "deep/" * 20 + "x_async.py")


def test_a_line_ruff_cannot_shorten_fails_loudly_with_its_line() -> None:
    source = "def f() -> None:\n    pass  # " + "x" * 100 + "\n"
    with pytest.raises(
        a2s.GenerationError, match=r"(?s)fails ruff check.*E501.*_twin_for_tests\.py:4"
    ):
        a2s.generate(source, "src/x_async.py", GENERATED, ROOT)


def test_generating_is_idempotent_and_a_sync_file_only_gains_the_header() -> None:
    source = textwrap.dedent("""\
        import asyncio

        from .dal_async import AsyncConfigDAL


        async def f(dal: AsyncConfigDAL) -> None:
            if ASYNC:
                await asyncio.sleep(0)
            await (dal.close())
        """)
    once = a2s.generate(source, "src/x_async.py", GENERATED, ROOT)
    assert "def f(dal: ConfigDAL) -> None:\n    dal.close()\n" in once
    assert a2s.generate(once, "src/x_async.py", GENERATED, ROOT) == once
    plain = once.split("\n", 2)[2]  # the same sync code, without its header
    assert a2s.generate(plain, "src/x_async.py", GENERATED, ROOT) == once


def test_the_generated_code_runs_like_the_async_source() -> None:
    source = textwrap.dedent("""\
        from collections.abc import AsyncIterator
        from contextlib import asynccontextmanager


        class Numbers:
            def __init__(self, stop: int) -> None:
                self.n, self.stop = 0, stop

            def __aiter__(self) -> "Numbers":
                return self

            async def __anext__(self) -> int:
                self.n += 1
                if self.n > self.stop:
                    raise StopAsyncIteration
                return self.n


        @asynccontextmanager
        async def opened(stop: int) -> AsyncIterator[Numbers]:
            yield Numbers(stop)


        async def total(stop: int) -> int:
            async with opened(stop) as numbers:
                return sum([n async for n in numbers])
        """)
    assert asyncio.run(run(source)["total"](4)) == 10
    assert run(a2s.to_sync(source, "numbers_async.py"))["total"](4) == 10


# --- the command line -------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, tuple[object, ...]]:
    """A throwaway root with two async sources and the pair table naming them."""
    (tmp_path / "ruff.toml").write_text('line-length = 100\n[lint]\nselect = ["E", "F", "I"]\n')
    (tmp_path / "pkg").mkdir()
    for name in ("one", "two"):
        (tmp_path / f"pkg/{name}_async.py").write_text(
            f"async def {name}(x):\n    return await x\n", encoding="utf-8"
        )
    pairs = tuple(a2s.Pair(f"pkg/{n}_async.py", f"pkg/{n}.py") for n in ("one", "two"))
    return tmp_path, pairs


def _main(args: list[str], tree: tuple[Path, tuple[object, ...]]) -> int:
    root, pairs = tree
    return int(a2s.main(args, root=root, pairs=pairs))


def test_generate_writes_every_twin_then_check_passes(
    tree: tuple[Path, tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    assert _main([], tree) == 0
    assert (root / "pkg/one.py").read_text(encoding="utf-8").endswith("def one(x):\n    return x\n")
    assert (root / "pkg/two.py").exists()
    capsys.readouterr()
    assert _main(["--check"], tree) == 0
    assert capsys.readouterr().out == ""


def test_check_names_a_stale_twin_shows_the_diff_and_writes_nothing(
    tree: tuple[Path, tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    _main([], tree)
    edited = (root / "pkg/two.py").read_text(encoding="utf-8") + "EDITED_BY_HAND = 1\n"
    (root / "pkg/two.py").write_text(edited, encoding="utf-8")
    capsys.readouterr()
    assert _main(["--check"], tree) == 1
    out = capsys.readouterr().out
    assert "stale: pkg/two.py" in out
    assert "-EDITED_BY_HAND = 1" in out
    assert "pkg/one.py" not in out
    assert (root / "pkg/two.py").read_text(encoding="utf-8") == edited


def test_check_names_a_missing_twin(
    tree: tuple[Path, tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    _main([], tree)
    (root / "pkg/one.py").unlink()
    capsys.readouterr()
    assert _main(["--check"], tree) == 1
    assert "missing: pkg/one.py" in capsys.readouterr().out
    assert not (root / "pkg/one.py").exists()


def test_check_diff_is_cut_at_forty_lines(
    tree: tuple[Path, tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    _main([], tree)
    (root / "pkg/one.py").write_text("".join(f"x{i} = {i}\n" for i in range(100)))
    capsys.readouterr()
    assert _main(["--check", "pkg/one_async.py"], tree) == 1
    out = capsys.readouterr().out
    assert "more diff lines" in out
    assert len(out.splitlines()) <= 1 + 40 + 1  # the name, the diff, the cut


def test_a_missing_source_is_reported_and_fails(
    tree: tuple[Path, tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    (root / "pkg/two_async.py").unlink()
    assert _main([], tree) == 1
    assert "source pkg/two_async.py does not exist" in capsys.readouterr().err
    assert (root / "pkg/one.py").exists()  # the others are still generated


def test_paths_restrict_the_run_to_their_pairs(
    tree: tuple[Path, tuple[object, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = tree
    monkeypatch.chdir(root)
    assert _main(["pkg/two_async.py"], tree) == 0
    assert (root / "pkg/two.py").exists()
    assert not (root / "pkg/one.py").exists()
    assert _main(["--check", "pkg/two_async.py"], tree) == 0
    assert _main(["--check"], tree) == 1  # one.py was not generated


def test_a_path_outside_the_table_is_a_usage_error(
    tree: tuple[Path, tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _main(["pkg/nowhere.py"], tree)
    assert exc.value.code == 2
    assert "not a source (or twin) listed in PAIRS" in capsys.readouterr().err


def test_a_source_that_cannot_be_generated_fails_with_its_line(
    tree: tuple[Path, tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = tree
    (root / "pkg/one_async.py").write_text("if ASYNC:\n    a = 1\nelif b:\n    a = 2\n")
    assert _main([], tree) == 1
    assert "pkg/one_async.py:1: `elif` after `if ASYNC:`" in capsys.readouterr().err
    assert not (root / "pkg/one.py").exists()


def test_the_real_pair_table_is_consistent_with_names() -> None:
    """Each twin's module name is its source's, renamed through NAMES (imports then agree)."""
    for pair in a2s.PAIRS:
        source, generated = Path(pair.source), Path(pair.generated)
        assert source.parent == generated.parent
        assert a2s.NAMES[source.stem] == generated.stem


def test_generation_is_fast_on_a_large_module() -> None:
    methods = "".join(
        f"    async def m{i}(self, dal: AsyncConfigDAL) -> int:\n"
        f"        async with dal.transaction() as tx:\n"
        f"            return await tx.get({i})\n\n"
        for i in range(400)
    )
    source = f"from .dal_async import AsyncConfigDAL\n\n\nclass C:\n{methods}"
    started = time.perf_counter()
    result = a2s.generate(source, "src/x_async.py", GENERATED, ROOT)
    assert time.perf_counter() - started < 5  # all four twins must take less than this
    assert "def m399(self, dal: ConfigDAL) -> int:" in result
