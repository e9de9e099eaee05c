# amira-data-access tasks. Needs Python >= 3.11 and `just` (pip install rust-just).
# Every recipe sets up ./.venv first (once, and again when pyproject.toml changes).

venv := ".venv"
py := venv / "bin/python"

# list the recipes
default:
    @just --list

# create .venv and install the project with its dev tools when needed
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{py}} ]; then python3 -m venv {{venv}}; fi
    if [ ! -f {{venv}}/.installed ] || [ pyproject.toml -nt {{venv}}/.installed ]; then
        {{py}} -m pip install --quiet --upgrade pip
        {{py}} -m pip install --quiet -e ".[dev]"
        touch {{venv}}/.installed
    fi

# guided tour: amira-config, then the Python API, on an embedded PostgreSQL removed afterwards
demo: setup
    {{py}} -m amira_data_access._dev.cli_demo

# all tests: unit, integration (real PostgreSQL, started here) and contract
test *args: setup
    {{py}} -m pytest {{args}}

# More restarts, kills and racing processes than CI runs (AMIRA_CONFIG_SOAK=1). `-s` shows
# one line of figures per scenario; AMIRA_CONFIG_RELIABILITY_REPORT=FILE appends them as JSON.
# the fault tests (tests/reliability) in their long versions, e.g. `just soak -k regressions -s`
soak *args: setup
    AMIRA_CONFIG_SOAK=1 {{py}} -m pytest tests/reliability {{args}}

# benchmarks on a durable throwaway PostgreSQL; writes benchmarks/RESULTS.md (`just bench --help`)
# (also installs the `bench` extra: asyncpg and redis-py, the clients compared with)
bench *args: setup
    @{{py}} -c "import asyncpg, redis" 2>/dev/null || {{py}} -m pip install --quiet -e ".[dev,bench]"
    {{py}} -m benchmarks {{args}}

# regenerate the sync twins (dal.py, store.py...) from their async sources; `--check`, or
# source paths to regenerate only those, are passed on (tools/async_to_sync.py)
generate *args: setup
    {{py}} tools/async_to_sync.py {{args}}

# squawk on migrations/: each file runs in a transaction (--assume-in-transaction) in
# which the runner already SETs LOCAL lock_timeout and statement_timeout, and a failed
# file rolls back whole, so IF NOT EXISTS (prefer-robust-stmts) would only hide drift.
# sync twins fresh, ruff, formatting, mypy --strict, and squawk on the migrations
lint: setup
    {{py}} tools/async_to_sync.py --check
    {{venv}}/bin/ruff check src tests
    {{venv}}/bin/ruff format --check src tests
    {{venv}}/bin/mypy --strict src
    {{venv}}/bin/squawk --assume-in-transaction --exclude=require-lock-timeout,require-statement-timeout,prefer-robust-stmts migrations/*.sql

# what CI runs
ci: lint test
