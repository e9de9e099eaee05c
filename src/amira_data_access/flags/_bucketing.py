"""flagd's ``fractional`` bucketing, bit for bit: which slice of a rollout a user is in.

flagd (``openfeature-flagd-core`` 2, the in-process provider's evaluator) hashes the
*canonical CBOR encoding* of the array ``[flagKey, targetingKey]`` with MurmurHash3
x86 32-bit (seed 0, read unsigned), then maps the hash onto the summed weights
with integer arithmetic: ``bucket = (hash * total_weight) >> 32``; the variant is
the first whose cumulative weight exceeds the bucket. Doing exactly the same means
a rollout moves between flagd and this store without reshuffling a single user
(tests/integration/test_flagd_equivalence.py checks 10,000 keys against flagd).

Earlier flagd releases hashed ``flagKey + targetingKey`` as text and bucketed by
percentage; we follow the current one, which the ``openfeature-provider-flagd``
package we test against uses.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

try:
    import mmh3
except ImportError as missing:  # pragma: no cover - the dev extra installs it
    raise ImportError(
        "feature flags need the 'flags' extra: pip install 'amira-data-access[flags]'"
    ) from missing

__all__ = ["MAX_TOTAL_WEIGHT", "bucket_of", "cbor_text_pair", "key_prefix", "pick_weighted"]

# flagd refuses a rollout whose weights add up to more than a signed 32-bit int.
MAX_TOTAL_WEIGHT: Final = 2_147_483_647


def _cbor_text(text: str) -> bytes:
    """One CBOR text string (major type 3) with the shortest length header (canonical)."""
    data = text.encode("utf-8")
    size = len(data)
    if size < 24:
        head = bytes((0x60 | size,))
    elif size < 0x100:
        head = bytes((0x78, size))
    elif size < 0x10000:
        head = b"\x79" + struct.pack(">H", size)
    elif size < 0x100000000:
        head = b"\x7a" + struct.pack(">I", size)
    else:  # pragma: no cover - a 4 GiB key does not fit in a configuration value
        head = b"\x7b" + struct.pack(">Q", size)
    return head + data


def cbor_text_pair(first: str, second: str) -> bytes:
    """``cbor2.dumps([first, second], canonical=True)`` without the cbor2 dependency."""
    return b"\x82" + _cbor_text(first) + _cbor_text(second)


def key_prefix(flag_key: str) -> bytes:
    """The CBOR bytes every hash of ``flag_key`` starts with (computed once per flag)."""
    return b"\x82" + _cbor_text(flag_key)


def bucket_of(flag_key: str, targeting_key: str, total_weight: int) -> int:
    """The bucket, in ``range(total_weight)``, of a targeting key for a flag."""
    return _bucket(key_prefix(flag_key), targeting_key, total_weight)


def _bucket(prefix: bytes, targeting_key: str, total_weight: int) -> int:
    digest: int = mmh3.hash(prefix + _cbor_text(targeting_key), signed=False)
    return (digest * total_weight) >> 32


def pick_weighted(
    prefix: bytes,
    targeting_key: str,
    weights: Sequence[tuple[str, int]],
    total_weight: int,
) -> str:
    """The variant of ``weights`` (in order) a targeting key falls in; ``total_weight > 0``.

    ``prefix`` is the flag's :func:`key_prefix`.
    """
    bucket = _bucket(prefix, targeting_key, total_weight)
    reached = 0
    for variant, weight in weights:
        reached += weight
        if bucket < reached:
            return variant
    # Unreachable: bucket < total_weight == reached after the loop.
    raise AssertionError("bucket beyond the total weight")  # pragma: no cover
