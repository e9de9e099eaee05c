"""pgbench -S with one client: the physical reference for a single-row read."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ._timing import BlockSample

__all__ = ["Pgbench"]

_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


@dataclass(frozen=True)
class Pgbench:
    """A pgbench binary pointed at one database (its password passed by environment)."""

    program: Path
    env: dict[str, str]
    dsn: str

    def _argv_env(self) -> tuple[str, dict[str, str]]:
        # The password goes in PGPASSWORD, not argv, where any `ps` would show it.
        params = conninfo_to_dict(self.dsn)
        password = params.pop("password", None)
        env = dict(self.env)
        if password:
            env["PGPASSWORD"] = str(password)
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None}), env

    def _run(self, *args: str, cwd: str | None = None) -> str:
        conninfo, env = self._argv_env()
        result = subprocess.run(
            [str(self.program), *args, conninfo],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pgbench {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    def initialize(self, scale: int = 1) -> None:
        """``pgbench -i -s scale``: create and fill pgbench's tables (quietly)."""
        self._run("-i", "-q", "-s", str(scale))

    def command(self, ops: int) -> str:
        """The command line a reader can re-run (without the connection string)."""
        return " ".join(["pgbench", *self._select_args(ops)])

    @staticmethod
    def _select_args(ops: int) -> list[str]:
        # -S: the built-in select-only script (one primary-key SELECT per transaction);
        # -M prepared: like the raw psycopg baseline; -n: no vacuum before each run.
        return ["-S", "-c1", "-j1", "-n", "-M", "prepared", "-t", str(ops)]

    def select_only(self, ops: int) -> BlockSample:
        """``ops`` transactions of the select-only script, one client; latencies from its log."""
        with tempfile.TemporaryDirectory(prefix="amira-pgbench-") as logs:
            out = self._run(*self._select_args(ops), "-l", "--log-prefix=tx", cwd=logs)
            match = _TPS.search(out)
            if match is None:
                raise RuntimeError(f"no tps in pgbench output: {out[-300:]}")
            latencies: list[int] = []
            for log in Path(logs).glob("tx*"):
                for line in log.read_text().splitlines():
                    # client_id transaction_no time_us script_no epoch epoch_us
                    latencies.append(int(line.split()[2]) * 1000)
        tps = float(match.group(1))
        # pgbench's own tps (it excludes connection time): busy time = transactions / tps.
        wall_ns = int(len(latencies) / tps * 1e9) if tps > 0 else 0
        return BlockSample(latencies, wall_ns, cpu_ns=None)
