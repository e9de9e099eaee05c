"""The retry policy: which failures may be repeated, and how long to wait."""

from __future__ import annotations

import psycopg
import psycopg_pool
import pytest

from amira_data_access import RetryPolicy
from amira_data_access.core.retry import NO_RETRY


def _error(sqlstate: str) -> psycopg.Error:
    return psycopg.errors.lookup(sqlstate)("boom")


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
@pytest.mark.parametrize("idempotent", [True, False])
def test_rolled_back_statements_are_retried_reads_and_writes(
    sqlstate: str, idempotent: bool
) -> None:
    """Serialization failures and deadlocks rolled the statement back: always safe to repeat."""
    assert RetryPolicy().should_retry(_error(sqlstate), attempt=1, idempotent=idempotent)


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.lookup("08006")("connection failure"),
        psycopg.errors.lookup("57P01")("terminating connection due to administrator command"),
    ],
)
def test_lost_connections_are_retried_only_for_idempotent_calls(exc: psycopg.Error) -> None:
    """A write may have committed before the connection went: only reads are repeated."""
    policy = RetryPolicy()
    assert policy.should_retry(exc, attempt=1, idempotent=True)
    assert not policy.should_retry(exc, attempt=1, idempotent=False)


@pytest.mark.parametrize(
    "exc",
    [
        _error("23514"),
        _error("42P01"),
        _error("28P01"),
        psycopg_pool.PoolTimeout("no connection"),
        psycopg_pool.PoolClosed("closed"),
        ValueError("not a driver error"),
    ],
)
def test_everything_else_surfaces_at_once(exc: BaseException) -> None:
    """Constraint, schema, auth and pool errors, and non-driver errors, are not retried."""
    assert not RetryPolicy().should_retry(exc, attempt=1, idempotent=True)


def test_attempts_are_capped() -> None:
    """The last allowed attempt is not followed by another; attempts=1 never retries."""
    policy = RetryPolicy(attempts=3)
    assert policy.should_retry(_error("40001"), attempt=2, idempotent=True)
    assert not policy.should_retry(_error("40001"), attempt=3, idempotent=True)
    assert not NO_RETRY.should_retry(_error("40001"), attempt=1, idempotent=True)


def test_delays_grow_exponentially_up_to_the_cap_with_jitter() -> None:
    """Each delay is random within [0, min(max_delay, base * 2**(attempt-1))]."""
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=0.35)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.35), (8, 0.35)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the range
        assert len(set(delays)) > 100


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"base_delay": -1.0}, {"base_delay": 2.0, "max_delay": 1.0}]
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    """A policy that cannot work is refused at construction."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_default_policy_tries_three_times_from_20_ms_to_half_a_second() -> None:
    """The documented defaults (README "Retries"): 3 attempts, 0.02 s base, 0.5 s cap."""
    assert RetryPolicy() == RetryPolicy(attempts=3, base_delay=0.02, max_delay=0.5)
    assert RetryPolicy().should_retry(_error("40001"), attempt=2, idempotent=False)
    assert not RetryPolicy().should_retry(_error("40001"), attempt=3, idempotent=False)


@pytest.mark.parametrize(("attempts", "base", "cap"), [(1, 0.0, 0.0), (1, 0.1, 0.1), (5, 0.0, 1.0)])
def test_the_bounds_of_a_policy_are_inclusive(attempts: int, base: float, cap: float) -> None:
    """One attempt, no delay at all, and a cap equal to the base are all valid policies."""
    policy = RetryPolicy(attempts=attempts, base_delay=base, max_delay=cap)
    assert 0 <= policy.delay(1) <= cap


@pytest.mark.parametrize(
    ("attempts", "base", "cap"), [(0, 0.1, 0.1), (1, -0.1, 0.1), (1, 0.2, 0.1)]
)
def test_an_impossible_policy_is_refused(attempts: int, base: float, cap: float) -> None:
    """No attempt at all, a negative delay, a cap below the base: ValueError."""
    with pytest.raises(ValueError, match="attempts >= 1"):
        RetryPolicy(attempts=attempts, base_delay=base, max_delay=cap)


def test_a_policy_cannot_be_changed_once_made() -> None:
    """Frozen: a DAL's policy is fixed when the DAL is made (shared by its operations)."""
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().attempts = 10  # type: ignore[misc]
