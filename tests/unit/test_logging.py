"""Unit tests for logging: Operation's one event per call, and configure_logging."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import psycopg
import psycopg.errors
import pytest
import structlog
from structlog.testing import capture_logs

from amira_data_access.core.running import Context
from amira_data_access.errors import (
    ConcurrentModificationError,
    ConfigurationAccessError,
    DatabaseConnectionError,
    InvalidConfigurationError,
    SchemaNotReadyError,
    ServerRefusal,
)
from amira_data_access.logging import LOGGER_NAME, configure_logging, get_logger


@pytest.fixture(autouse=True)
def pristine_structlog() -> Iterator[None]:
    """Start and end every test with structlog's built-in defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


CONTEXT = Context(secrets=("pw-secret",))


def _failure(name: str, key: str | None, exc: Exception) -> ConfigurationAccessError:
    """What leaves an operation whose body raised ``exc``."""
    with pytest.raises(ConfigurationAccessError) as raised, CONTEXT.operation(name, key):
        raise exc
    assert raised.value.__cause__ is exc or raised.value is exc
    return raised.value


def test_operation_done_logs_one_event() -> None:
    """Leaving the block logs one event named after the operation with key, outcome, duration."""
    with capture_logs() as events, CONTEXT.operation("config.get", "k") as op:
        op.outcome = "hit"
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "config.get"
    assert event["key"] == "k"
    assert event["outcome"] == "hit"
    assert event["log_level"] == "debug"
    assert isinstance(event["duration_ms"], float)
    assert event["duration_ms"] >= 0


def test_operation_done_level_and_extra_fields() -> None:
    """The event is at the operation's level, with its noted fields and outcome 'ok' by default."""
    with capture_logs() as events, CONTEXT.operation("config.list", level="info") as op:
        op.note(count=3)
    assert len(events) == 1
    assert events[0]["log_level"] == "info"
    assert events[0]["outcome"] == "ok"
    assert events[0]["key"] is None
    assert events[0]["count"] == 3


def test_operation_failed_translates_and_logs_once() -> None:
    """A backend error is translated, raised from the original, logged once without secrets."""
    exc = psycopg.errors.lookup("42P01")('relation "configurations" does not exist pw-secret')
    with capture_logs() as events:
        error = _failure("config.get", "k", exc)
    assert type(error) is SchemaNotReadyError
    assert "pw-secret" not in str(error)
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "config.get"
    assert event["log_level"] == "error"
    assert event["key"] == "k"
    assert event["outcome"] == "error"
    assert event["error_type"] == "SchemaNotReadyError"
    assert event["error"] == str(error)
    assert "pw-secret" not in event["error"]
    assert isinstance(event["duration_ms"], float)


def test_operation_failed_connection_error() -> None:
    """A lost connection is raised and logged as a DatabaseConnectionError."""
    with capture_logs() as events:
        error = _failure("config.set", "k", psycopg.OperationalError("connection lost"))
    assert type(error) is DatabaseConnectionError
    assert [event["error_type"] for event in events] == ["DatabaseConnectionError"]


def test_operation_failed_type_mismatch_constraint() -> None:
    """A violation of the value/type CHECK constraint becomes a clear InvalidConfigurationError."""
    refusal = ServerRefusal("check violated", "23514", "configurations_value_matches_type")
    with capture_logs() as events:
        error = _failure("config.set", "k", refusal)
    assert type(error) is InvalidConfigurationError
    assert "data_type" in str(error)
    assert events[0]["error_type"] == "InvalidConfigurationError"


def test_an_error_is_logged_once_however_many_operations_it_crosses() -> None:
    """A transaction around a failed operation does not log the operation's error again."""
    exc = psycopg.OperationalError("connection lost")
    outer, inner = CONTEXT.operation("config.transaction"), CONTEXT.operation("config.set", "k")
    with capture_logs() as events, pytest.raises(DatabaseConnectionError), outer, inner:
        raise exc
    assert [(event["event"], event["outcome"]) for event in events] == [("config.set", "error")]


def test_refused_input_is_a_warning_and_a_conflict_is_info() -> None:
    """Validation before any statement logs 'invalid' at warning; a conflict logs at info."""
    with capture_logs() as events:
        _failure("config.set", "k", InvalidConfigurationError("bad key"))
        _failure(
            "config.set",
            "k",
            ConcurrentModificationError("k", expected_version=1, current_version=2),
        )
    assert [(e["log_level"], e["outcome"]) for e in events] == [
        ("warning", "invalid"),
        ("info", "conflict"),
    ]


def test_foreign_exceptions_pass_through_unlogged() -> None:
    """An exception neither ours nor a backend's (a caller's bug) is not logged nor wrapped."""
    transaction = CONTEXT.operation("config.transaction")
    with capture_logs() as events, pytest.raises(KeyError), transaction:
        raise KeyError("caller")
    assert events == []


def test_unconfigured_library_logs_through_stdlib(caplog: pytest.LogCaptureFixture) -> None:
    """Without structlog configured, events go to the stdlib logger as key=value text."""
    assert not structlog.is_configured()
    operation = CONTEXT.operation("config.get", "k")
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME), operation:
        operation.outcome = "miss"
    records = [record for record in caplog.records if record.name == LOGGER_NAME]
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("event='config.get'")
    assert "key='k'" in message
    assert "outcome='miss'" in message


def test_unconfigured_library_drops_debug_below_level(caplog: pytest.LogCaptureFixture) -> None:
    """Without structlog configured, debug events below the logger's level are dropped."""
    operation = CONTEXT.operation("config.get", "k")
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME), operation:
        operation.outcome = "miss"
    assert [record for record in caplog.records if record.name == LOGGER_NAME] == []


def test_get_logger_follows_structlog_configuration() -> None:
    """get_logger gives the stdlib wrapper until structlog is configured, then structlog's."""
    unconfigured = get_logger()
    structlog.configure(processors=[structlog.processors.JSONRenderer()])
    assert get_logger() is not unconfigured


def test_configure_logging_json_lines() -> None:
    """configure_logging(json=True) writes one JSON object per event with level and time."""
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    structlog.get_logger().info("hello", a=1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "hello"
    assert record["a"] == 1
    assert record["level"] == "info"
    assert "timestamp" in record


def test_configure_logging_filters_below_level() -> None:
    """Events below the configured level are not written."""
    stream = io.StringIO()
    configure_logging(level="warning", json=True, stream=stream)
    logger = structlog.get_logger()
    logger.info("dropped")
    logger.warning("kept")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [record["event"] for record in records] == ["kept"]


def test_configure_logging_accepts_numeric_level() -> None:
    """A numeric level works like its name."""
    stream = io.StringIO()
    configure_logging(level=logging.ERROR, json=True, stream=stream)
    structlog.get_logger().warning("dropped")
    assert stream.getvalue() == ""


def test_configure_logging_console_for_non_tty_when_json_false() -> None:
    """json=False writes human-readable console lines, not JSON."""
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)
    structlog.get_logger().info("hello", a=1)
    text = stream.getvalue()
    assert "hello" in text
    assert "a=1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_configure_logging_defaults_to_json_when_not_a_terminal() -> None:
    """json=None picks JSON for a stream that is not a terminal."""
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.get_logger().info("hello")
    assert json.loads(stream.getvalue())["event"] == "hello"


@pytest.mark.parametrize("level", ["nope", "", "LEVEL 5"])
def test_configure_logging_refuses_unknown_level(level: str) -> None:
    """An unknown level name raises ValueError and leaves structlog unconfigured."""
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level=level, stream=io.StringIO())
    assert not structlog.is_configured()


def test_is_enabled_follows_the_stdlib_level_until_structlog_is_configured() -> None:
    """Without structlog configured, filtered levels cost only the stdlib level check."""
    import logging as stdlib_logging

    import structlog as _structlog

    from amira_data_access.logging import LOGGER_NAME, is_enabled

    _structlog.reset_defaults()
    logger = stdlib_logging.getLogger(LOGGER_NAME)
    old = logger.level
    try:
        logger.setLevel(stdlib_logging.WARNING)
        assert not is_enabled("debug")
        assert not is_enabled("info")
        assert is_enabled("warning")
        logger.setLevel(stdlib_logging.DEBUG)
        assert is_enabled("debug")
    finally:
        logger.setLevel(old)


def test_is_enabled_asks_a_filtering_structlog_logger_its_level() -> None:
    """configure_logging(level="INFO") drops debug events: a get then has none to emit."""
    from amira_data_access.logging import is_enabled

    configure_logging(level="INFO", stream=io.StringIO())
    assert not is_enabled("debug")
    assert is_enabled("info")
    assert is_enabled("warning")
    configure_logging(level="DEBUG", stream=io.StringIO())
    assert is_enabled("debug")


def test_is_enabled_says_yes_to_a_structlog_wrapper_that_filters_later() -> None:
    """stdlib's BoundLogger filters in a processor (filter_by_level): it may emit anything."""
    from amira_data_access.logging import is_enabled

    structlog.configure(wrapper_class=structlog.stdlib.BoundLogger)
    assert is_enabled("debug")
    structlog.reset_defaults()
    with capture_logs():  # structlog's default wrapper filters nothing: tests see every event
        assert is_enabled("debug")
