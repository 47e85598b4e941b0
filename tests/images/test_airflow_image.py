"""The Airflow image users deploy (images/airflow/Dockerfile), checked inside the image.

``MRT_AIRFLOW_IMAGE`` names the image ``scripts/build_images.sh airflow`` built
(``scripts/test.sh`` sets it; docs/images.md says when CI builds it). Inside it, as the
image's own ``airflow`` user with its own Python and packages, the DAG folder must parse
with no import errors, and the DAG must be the one this repository defines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "images" / "podman" / "containers.conf"
IMAGE = os.environ.get("MRT_AIRFLOW_IMAGE", "")

pytestmark = pytest.mark.skipif(
    not IMAGE or shutil.which("podman") is None,
    reason="no Airflow image: set MRT_AIRFLOW_IMAGE to `scripts/build_images.sh airflow | tail -n1` "
    "(scripts/test.sh does where that image is built; docs/images.md)",
)


def _python(script: str) -> dict[str, object]:
    """Run ``script`` with the image's own python, as its user; its stdout is one JSON."""
    # --entrypoint: the official image's entry point would run `airflow <args>`; naming
    # python makes the command the same on the official image and the stand-in base.
    run = subprocess.run(
        ["podman", "run", "--rm", "--entrypoint", "python", IMAGE, "-c", script],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_the_dag_folder_parses_inside_the_image_with_no_import_errors() -> None:
    # The dag-processor's own parse (DagBag over AIRFLOW_HOME's dags folder, as
    # `airflow dags list-import-errors --local` does, minus the metadata database
    # that command insists on being migrated).
    got = _python(
        "import json, os\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(os.path.join(os.environ['AIRFLOW_HOME'], 'dags'))\n"
        "print(json.dumps({'errors': bag.import_errors,"
        " 'dags': {i: d.fileloc for i, d in bag.dags.items()},"
        " 'tasks': len(bag.dags['multi_region_training'].tasks) if 'multi_region_training' in bag.dags else 0}))\n"
    )
    assert got["errors"] == {}, f"import errors inside the image: {got['errors']}"
    assert got["dags"] == {dag_id: f"/opt/airflow/dags/{dag_id}.py"
                           for dag_id in ("multi_region_training", "refresh_limits", "budget_guard")}
    assert isinstance(got["tasks"], int) and got["tasks"] > 0


def test_the_image_installs_the_pinned_set_as_the_airflow_user() -> None:
    # The official image's layout the Dockerfile relies on: user 50000, AIRFLOW_HOME, and
    # the project's pins (requirements.txt) installed, not the base image's own versions.
    script = (
        "import importlib.metadata as m, json, os;"
        "print(json.dumps({'uid': os.getuid(), 'home': os.environ['AIRFLOW_HOME'],"
        " 'versions': {d: m.version(d) for d in ('apache-airflow', 'apache-airflow-providers-amazon',"
        " 'apache-airflow-providers-postgres', 'psycopg2-binary', 'redis', 'matplotlib')}}))"
    )
    got = _python(script)
    assert got["uid"] == 50000 and got["home"] == "/opt/airflow"
    versions = got["versions"]
    assert isinstance(versions, dict)
    pins: dict[str, str] = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[name.split("[", 1)[0]] = version.strip()
    for dist, version in versions.items():
        assert version == pins[dist], f"{dist} {version} in the image, {pins[dist]} pinned"
