"""The source distribution holds what its own tests and Justfile need.

The sdist once shipped the benchmark smoke test and the ``bench`` recipe without
``benchmarks/``: built here (``python -m build --sdist``, hatchling, no network),
it must hold every file git tracks, so a test or a recipe can never again refer
to a file the sdist lacks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tracked_files() -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist has no list to compare with)")
    done = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return {line for line in done.stdout.splitlines() if line}


def test_sdist_holds_every_tracked_file(tmp_path: Path) -> None:
    """benchmarks/, tools/, .ci/, the tests, the SQL and the Justfile are all in the sdist."""
    tracked = _tracked_files()
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in (
        "benchmarks/__main__.py",
        "benchmarks/RESULTS.md",
        "tests/integration/test_benchmarks_smoke.py",
        "tools/async_to_sync.py",
        ".ci/run",
        "Justfile",
        "pyproject.toml",
    ):
        assert needed in names, needed
    missing = sorted(path for path in tracked if path not in names)
    assert missing == [], f"tracked but not in the sdist: {missing}"
