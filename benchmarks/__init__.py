"""Benchmarks of amira-data-access: ratios against raw psycopg, connect-per-call and pgbench.

Run ``just bench`` (or ``python -m benchmarks --help``). The runner starts its
own durable throwaway PostgreSQL unless ``--dsn`` is given, measures every case
single-process, and writes a Markdown report to ``benchmarks/RESULTS.md``.
"""
