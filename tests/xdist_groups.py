"""The test run's xdist work units (``pytest -n 2``, scripts/test.sh): the scheduler in
``tests/conftest.py`` (``pytest_xdist_make_scheduler``) puts each test in
:func:`xdist_group_of` its file."""

from __future__ import annotations

#: Test files that run the stack end to end, in two xdist work units that each keep their
#: files in order on one worker, as a serial run does: Airflow's real services with
#: restarts, faults and a database stopped mid-job (timing-sensitive: each is one of a
#: kind at any moment), and the rest of the end-to-end runs (real training, the Batch
#: launchers, the images). Every other file is a work unit of its own (its fixtures start
#: once), taken by whichever worker is free. The toolkit's real launches (about 4 min) run
#: in the services unit: in the end-to-end unit they made it the run's critical path
#: (about 23 min, while the other worker was done after about 12).
SERIAL_GROUPS = (
    ("services", ("tests/e2e/test_celery_stack.py", "tests/e2e/test_celery_hosts.py", "tests/e2e/test_services.py",
                  "tests/e2e/test_services_report_after_clear.py", "tests/emulator/test_toolkit_launch.py")),
    ("end-to-end", ("tests/e2e/", "tests/images/")),
)


def xdist_group_of(path: str) -> str:
    """The work unit of the test file at ``path`` (relative to the repository)."""
    return next((group for group, prefixes in SERIAL_GROUPS if path.startswith(prefixes)), path)
