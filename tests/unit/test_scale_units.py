"""Issue 19, the pure parts: row-shape surprises translated, WAL positions compared."""

from __future__ import annotations

import pytest

from amira_data_access import ConfigurationAccessError
from amira_data_access.backends.pooler import lsn
from amira_data_access.core import operations as ops
from amira_data_access.core.running import Context


def test_rows_of_another_shape_are_our_error_not_a_raw_one() -> None:
    """A pooler mixing prepared statements hands one query another's rows: the raw
    ValueError (too many values to unpack) is translated, naming the remedy."""
    steps = ops.get_many(Context(), ["a", "b"])
    next(steps)
    with pytest.raises(ConfigurationAccessError, match="prepared_statements=False") as caught:
        steps.send([("a",)])  # one column where three are expected
    assert isinstance(caught.value.__cause__, IndexError | ValueError)


def test_lsn_orders_like_the_wal() -> None:
    assert lsn(None) is None
    assert lsn("0/0") == 0
    assert lsn("1/0") == 1 << 32
    assert lsn("0/FFFFFFFF") < lsn("1/0")  # type: ignore[operator]
    assert lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
