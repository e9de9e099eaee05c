"""``python -m benchmarks``: run the benchmark suite and write the report."""

from ._cli import main

raise SystemExit(main())
