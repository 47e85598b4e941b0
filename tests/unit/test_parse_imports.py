"""The DAG's parse imports only what building the DAG needs (issue 28's parse budget).

``bench/dag_benchmarks.py`` measures the parse; this keeps the modules that were taken off
its path off it: each costs every parse its module run (a dataclass, compiled regexes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from regional_training.cli import emit_ready
from regional_training.plan import params, training_request
from regional_training.run import assets
from regional_training.runtime import identifiers

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "multi_region_training.py"


def test_parsing_the_dag_imports_neither_the_ready_cli_nor_the_request_builder_nor_the_run() -> None:
    unwanted = ("regional_training.cli.emit_ready", "regional_training.plan.training_request",
                "regional_training.run.run_layout", "regional_training.run.run_context")
    code = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAG_FILE)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "assert 'regional_training.plan.params' in sys.modules  # the check below checks something\n"
        f"print('imported:', ','.join(m for m in {unwanted!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = [line for line in result.stdout.splitlines() if line.startswith("imported:")]
    assert imported == ["imported: "], result.stdout


def test_assets_passes_on_emit_ready_names_when_asked() -> None:
    assert assets.ReadyDataset is emit_ready.ReadyDataset
    assert assets.ReadyEventError is emit_ready.ReadyEventError
    assert assets.ready_dataset is emit_ready.ready_dataset
    assert (emit_ready.READY_ASSET_NAME, emit_ready.READY_ASSET_URI) == (
        assets.DATASET_READY.name, assets.DATASET_READY.uri) == (
        identifiers.READY_ASSET_NAME, identifiers.READY_ASSET_URI)
    try:
        assets.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_dataset_selection_reads_the_events_and_names_a_bad_one() -> None:
    class Event:
        def __init__(self, extra: dict[str, str]) -> None:
            self.extra, self.source_dag_id = extra, None

    good = {"campaign_key": "c1", "dataset_key": "d1"}
    context = {"triggering_asset_events": {assets.DATASET_READY: [Event(good), Event(good)]}}
    assert assets.dataset_selection(context) == [emit_ready.ReadyDataset("c1", "d1")]
    assert assets.dataset_selection({}) is None
    bad = {"triggering_asset_events": {assets.DATASET_READY: [Event({"campaign_key": "c1"})]}}
    try:
        assets.dataset_selection(bad)
    except emit_ready.ReadyEventError as error:
        assert "dataset_key" in str(error) and "event 0" in str(error)
    else:
        raise AssertionError("an event without dataset_key must be refused")


def test_the_instance_table_is_params_and_the_request_builder_passes_it_on() -> None:
    assert training_request.GPUS_PER_INSTANCE is params.GPUS_PER_INSTANCE
    assert params.param_specs()["instance_type"]["enum"] == sorted(params.GPUS_PER_INSTANCE)


def test_identifier_checks_compile_their_patterns_when_first_used() -> None:
    assert identifiers.is_region("eu-west-1") and not identifiers.is_region("EU-west-1")
    assert identifiers.is_bucket("my-bucket.data") and not identifiers.is_bucket("192.168.1.1")
    assert identifiers.is_s3_uri("s3://my-bucket/a/b") and not identifiers.is_s3_uri("s3://my-bucket/a,b")
    assert identifiers.is_key("dublin-2026") and not identifiers.is_key("Dublin")
    assert identifiers.is_target_key("c.d_p01") and identifiers.is_point_id("p01")
    assert identifiers.is_job_name("mrt-abc") and not identifiers.is_job_name("-mrt")
    assert identifiers.is_tag_value("a b:c") and identifiers.tag_value("a~b,c") == "a_b_c"
