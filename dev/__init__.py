"""Local tooling: PostgreSQL, the AWS emulator (``dev.local_aws``), the Airflow services
and their simulated hosts, for ``scripts/run_local.sh``, the tests and ``bench/``.

A package so that every user names it (``from dev.local_stack import local_aws``) and the
arrows into it are visible (tests/unit/test_import_graph.py); run from the repository root
or with it on ``PYTHONPATH`` (``python -m dev.local_aws.server``)."""
