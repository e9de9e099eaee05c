"""Which values a change may carry to the caches, so that they need not re-read the key.

The change feed reads what changed from the history (a notification is only a
doorbell: see :mod:`.listener`); a cache's feed reads, in that same query, the
current entry of each changed key whose value may be carried, and the cache
keeps it instead of dropping the key and re-reading it (one query per change
per process: ≈ 480 queries/s for 10 writes/s in a fleet of 50, in issue 19).

Carried values come from the table, over the listener's own connection, never
from a notification's payload (anyone who can connect may send one). What may
be carried is decided here, in one function: a new data type (``secret``, say)
is never carried unless it is added to :data:`CARRIED_TYPES` on purpose, and a
value larger than :data:`MAX_CARRIED_BYTES` of JSON text (NOTIFY's own payload
limit, 8,000 bytes) is re-read by the key instead, to keep each page of the
feed's read small.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CARRIED_TYPES", "MAX_CARRIED_BYTES", "carried_types", "may_carry"]

# Never a secret: a type not listed here is never carried (secrets are re-read, decrypted
# by whoever reads them, and never held by a feed).
CARRIED_TYPES: Final = ("str", "int", "float", "bool", "json")
MAX_CARRIED_BYTES: Final = 8000


def may_carry(data_type: str, json_bytes: int) -> bool:
    """Whether a ``data_type`` value of ``json_bytes`` of JSON text may come with its change."""
    return data_type in CARRIED_TYPES and json_bytes <= MAX_CARRIED_BYTES


def carried_types() -> list[str]:
    """The data types the feed's query may return values for (its ``carried_types``)."""
    return [name for name in CARRIED_TYPES if may_carry(name, 0)]
