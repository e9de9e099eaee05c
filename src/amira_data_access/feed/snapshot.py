"""The last-known-good snapshot of a cached DAL: every stored row, on disk, to start from when
the database cannot be reached.

One JSON file, replaced atomically (written to a temporary file beside it with
mode 0600, flushed to disk, then renamed over the old one: a reader sees the
old file or the new one, never a mix). It holds the rows as the database
holds them (values as stored, not decoded: a secret stays its ciphertext
envelope), the revision they were read at, when it was written, and a SHA-256
of all that. Loading checks the format and the checksum before anything is
used: a truncated, corrupt or edited file is refused as a whole
(:class:`SnapshotError`), never half-loaded.

The checksum catches corruption and edits that do not recompute it; it is not
a signature (whoever can write the file can write a matching checksum): keep
the file where only the service's user can write, which the 0600 mode does for
the file itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ..entries import ConfigEntry, entry_from_row
from ..errors import ConfigurationAccessError

__all__ = ["FORMAT", "Snapshot", "SnapshotError", "load_snapshot", "write_snapshot"]

FORMAT: Final = "amira-config-snapshot/1"


class SnapshotError(ConfigurationAccessError):
    """The snapshot file cannot be used: missing, unreadable, corrupt or modified."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every stored row at ``revision``, as read at ``written_at``."""

    revision: int
    written_at: datetime
    rows: dict[str, tuple[Any, ...]]  # key -> the row of queries/configurations.sql

    def entry(self, key: str) -> ConfigEntry | None:
        """The entry of ``key`` (decoded as a read from the database would be), or None."""
        row = self.rows.get(key)
        return entry_from_row(row) if row is not None else None

    def entries(self, prefix: str) -> list[ConfigEntry]:
        """The entries whose key starts with ``prefix``, in key order."""
        return [entry_from_row(self.rows[k]) for k in sorted(self.rows) if k.startswith(prefix)]

    def age_seconds(self) -> float:
        """How long ago it was read from the database."""
        return round((datetime.now(UTC) - self.written_at).total_seconds(), 3)


def _body(revision: int, written_at: str, rows: list[list[Any]]) -> dict[str, Any]:
    return {"format": FORMAT, "revision": revision, "written_at": written_at, "rows": rows}


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def snapshot_from_rows(revision: int, rows: Iterable[Sequence[Any]]) -> Snapshot:
    """A snapshot of ``rows`` (key, value, data_type, description, version, created_at,
    updated_at, updated_by) read at ``revision``."""
    return Snapshot(revision, datetime.now(UTC), {row[0]: tuple(row) for row in rows})


def write_snapshot(path: Path, snapshot: Snapshot) -> None:
    """Replace the file at ``path`` with ``snapshot``, atomically, readable by its owner only."""
    rows = [
        [key, value, data_type, description, version, created.isoformat(), updated.isoformat(), by]
        for key, (_, value, data_type, description, version, created, updated, by) in sorted(
            snapshot.rows.items()
        )
    ]
    body = _body(snapshot.revision, snapshot.written_at.isoformat(), rows)
    document = {**body, "sha256": _checksum(body)}
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600, in the same directory: os.replace is a rename.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(document, file, ensure_ascii=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:  # the rename itself, on disk
        directory_descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_descriptor)
    except OSError:
        pass
    finally:
        os.close(directory_descriptor)


def load_snapshot(path: Path) -> Snapshot:
    """The snapshot at ``path``, checked whole before use, else :class:`SnapshotError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot {str(path)!r} cannot be read: {exc}") from None
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        body = _body(document["revision"], document["written_at"], document["rows"])
        if document.get("sha256") != _checksum(body):
            raise SnapshotError(
                f"snapshot {str(path)!r} is corrupt or was modified (its checksum does not "
                "match): refused, nothing of it is used"
            )
        rows = {}
        for key, value, data_type, description, version, created, updated, by in body["rows"]:
            rows[key] = (
                key,
                value,
                data_type,
                description,
                version,
                datetime.fromisoformat(created),
                datetime.fromisoformat(updated),
                by,
            )
        revision = int(body["revision"])
        written_at = datetime.fromisoformat(body["written_at"])
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(
            f"snapshot {str(path)!r} is corrupt ({type(exc).__name__}: {exc}): refused, "
            "nothing of it is used"
        ) from None
    return Snapshot(revision, written_at, rows)
