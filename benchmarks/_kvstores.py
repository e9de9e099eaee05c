"""Redis and etcd, for comparison: their servers started here, and a minimal etcd client.

Each server is started from its Debian package's binary (``redis-server``,
``etcd``) on a free port of 127.0.0.1 in a temporary folder, and stopped (and
the folder removed) on leaving the ``with`` block. A missing binary raises
:class:`MissingServerError`, which the cases report as skipped with the reason.

etcd is spoken through its v3 HTTP/JSON gateway (``/v3/kv/range``, ``/v3/kv/put``,
``/v3/watch``) on one keep-alive ``http.client`` connection: the gRPC client on
PyPI (``etcd3`` 0.12) does not import with the protobuf that pip installs for
Python 3.11 (its generated modules predate protobuf 4), and the gateway needs no
package at all. JSON and base64 cost a few µs per call on our side; the server
does the same work as for gRPC.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._cpus import servers_started_here

__all__ = ["EtcdClient", "EtcdWatch", "MissingServerError", "etcd_server", "redis_server"]

_START_TIMEOUT_S = 20.0


class MissingServerError(Exception):
    """The server's binary is not installed (the message says which and how to get it)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingServerError(f"no `{name}` binary (Debian: apt-get install {package})")
    return path


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-500:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if ready():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {_START_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def _process(argv: list[str], folder: Path, what: str, ready: Callable[[], bool]) -> Iterator[None]:
    log = folder / "server.log"
    with log.open("wb") as out, servers_started_here():
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    try:
        _wait_until(ready, process, log, what)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def redis_server(*, fsync_always: bool = False) -> Iterator[tuple[str, int]]:
    """A redis-server on a free loopback port; yields (host, port).

    Default: no persistence (no RDB snapshots, no append-only file), the usual
    cache setup. ``fsync_always``: the append-only file fsync'd on every write,
    the setting that makes a Redis write as durable as a PostgreSQL commit.
    """
    program = _binary("redis-server", "redis-server")
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="amira-bench-redis-"))
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "always"]
        if fsync_always
        else ["--appendonly", "no"]
    )
    argv = [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--save", "", "--daemonize", "no", *persistence]  # fmt: skip

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    try:
        with _process(argv, folder, "redis-server", ready):
            yield "127.0.0.1", port
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def etcd_server() -> Iterator[tuple[str, int]]:
    """A single-member etcd on free loopback ports (its data fsync'd, as etcd always does)."""
    program = _binary("etcd", "etcd-server")
    client, peer = _free_port(), _free_port()
    folder = Path(tempfile.mkdtemp(prefix="amira-bench-etcd-"))
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = [program, "--name", "bench", "--data-dir", str(folder / "data"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"bench={peer_url}", "--log-level", "error"]  # fmt: skip

    def ready() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", client, timeout=1)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    try:
        with _process(argv, folder, "etcd", ready):
            yield "127.0.0.1", client
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that makes a range request cover every key starting with ``prefix``."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdClient:
    """get/put over etcd's v3 JSON gateway on one keep-alive connection."""

    def __init__(self, host: str, port: int) -> None:
        self._conn = http.client.HTTPConnection(host, port, timeout=10)
        self._headers = {"Content-Type": "application/json"}

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._conn.request("POST", path, json.dumps(body), self._headers)
        response = self._conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {response.status} {data[:200]!r}")
        result: dict[str, Any] = json.loads(data)
        return result

    def get(self, key: str) -> str | None:
        """The value of ``key`` (None when absent)."""
        kvs = self._call("/v3/kv/range", {"key": _b64(key)}).get("kvs")
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def put(self, key: str, value: str) -> None:
        """Write ``key`` (etcd fsyncs its log before answering)."""
        self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def put_many(self, items: dict[str, str], chunk: int = 100) -> None:
        """Load many keys, ``chunk`` per transaction (etcd's default limit is 128 ops)."""
        pairs = list(items.items())
        for start in range(0, len(pairs), chunk):
            ops = [
                {"request_put": {"key": _b64(k), "value": _b64(v)}}
                for k, v in pairs[start : start + chunk]
            ]
            self._call("/v3/kv/txn", {"success": ops})

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class EtcdWatch:
    """A watch stream on a key prefix: the gateway answers one JSON document per line."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self._conn = http.client.HTTPConnection(host, port, timeout=10)
        body = {"create_request": {"key": _b64(prefix), "range_end": _prefix_end(prefix)}}
        self._conn.request("POST", "/v3/watch", json.dumps(body))
        self._response = self._conn.getresponse()
        if self._response.status != 200:
            raise RuntimeError(f"etcd watch: HTTP {self._response.status}")
        created = self._next_result()
        if not created.get("created"):
            raise RuntimeError(f"etcd watch: unexpected first message {created}")

    def _next_result(self) -> dict[str, Any]:
        line = self._response.readline()
        if not line:
            raise RuntimeError("etcd watch stream ended")
        result: dict[str, Any] = json.loads(line)["result"]
        return result

    def next_values(self) -> list[tuple[str, str]]:
        """Block until the next batch of events; (key, value) of each."""
        events = self._next_result().get("events", [])
        return [
            (base64.b64decode(e["kv"]["key"]).decode(), base64.b64decode(e["kv"]["value"]).decode())
            for e in events
        ]

    def close(self) -> None:
        """End the stream."""
        self._conn.close()
