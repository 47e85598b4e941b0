"""The test run's xdist work units (tests/xdist_groups.py; scripts/test.sh runs two workers).

The files that run Airflow's services with restarts and faults mid-job are one unit, the
other end-to-end files another, so no two of those stacks compete at once as they never
did in a serial run; a renamed file must not fall out of its unit unnoticed.
"""

from __future__ import annotations

from pathlib import Path

from xdist_groups import SERIAL_GROUPS, xdist_group_of

REPO = Path(__file__).resolve().parents[2]


def test_every_named_file_exists() -> None:
    for _, prefixes in SERIAL_GROUPS:
        for prefix in prefixes:
            assert (REPO / prefix).exists(), f"{prefix} is in SERIAL_GROUPS but not in the repository"


def test_end_to_end_files_are_in_a_serial_unit_and_the_rest_each_in_its_own() -> None:
    files = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests").rglob("test_*.py"))
    services = {"tests/e2e/test_celery_stack.py", "tests/e2e/test_celery_hosts.py", "tests/e2e/test_services.py",
                "tests/e2e/test_services_report_after_clear.py", "tests/emulator/test_toolkit_launch.py"}
    for path in files:
        group = xdist_group_of(path)
        if path in services:
            assert group == "services", path
        elif path.startswith(("tests/e2e/", "tests/images/")):
            assert group == "end-to-end", path
        else:
            assert group == path, path
