"""A parameter scan, end to end: the real DAG (``dag.test``), the emulator as a server,
real tiny training (the sagemaker-training toolkit, mpirun, TensorFlow + Horovod on CPU).

One dataset (Boston) with copies in two regions; a 2x2 grid over it is four jobs,
placed across the regions by their quotas; each job's hyperparameters reach the entry
point exactly; the summary ranks the four and names the best, whose model gets its
stable pointer. A point with another image tag runs that image (the emulator's image map
has a ``repository:tag`` entry that says so in the job's log), and a tag outside the
allow-list is refused before anything is launched. Needs ``MRT_TRAIN_PYTHON``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helpers
import psycopg2
import pytest
from helpers import TRAINING_REGIONS

from dev.local_stack import CENTRAL_BUCKET, LOCAL_RUN_CONF, TRAINING_REPOSITORY, aws_client
from regional_training.plan import training_request

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow, pytest.mark.training]
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
CAMPAIGN, DATASET = "boston-winter-2026", "boston-winter-2026-v1"
#: The second copy this module adds (the sample data has Boston in us-east-1 and us-west-2).
EXTRA_COPY = ("eu-west-1", f"s3://mrt-campaign-data-eu-west-1/datasets/{CAMPAIGN}/{DATASET}/")
ALT_TAG = "scan-alt"
ALT_MARKER = f"local image map: {TRAINING_REPOSITORY}:{ALT_TAG}"
GRID = {"learning_rate": [0.05, 0.5], "batch_size": [8, 16]}


def _sql(dsn: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture(scope="module")
def scan_aws_endpoint(campaign_dsn: str, train_python: Path, airflow_db: Path) -> Iterator[str]:
    """The real-training emulator, whose image map also knows the tag ``scan-alt`` (the
    same training image, started through a shell that first says which tag it is), with
    a second copy of Boston in eu-west-1 (TFRecords), removed again afterwards."""
    from dev.local_aws.images import toolkit_image
    from dev.local_stack import REPO, local_aws, placeholder_samples, real_image_map, seed_aws, tfrecord_samples

    image_map = real_image_map(train_python)
    alt = toolkit_image(train_python, REPO)
    alt["command"] = ["/bin/sh", "-c", f'echo "{ALT_MARKER}"; exec "$0"', *alt["command"]]
    image_map[f"{TRAINING_REPOSITORY}:{ALT_TAG}"] = alt
    tfrecords = tfrecord_samples(train_python)

    def samples(region: str, dataset_key: str, directory: Path) -> None:
        (tfrecords if region in TRAINING_REGIONS else placeholder_samples)(region, dataset_key, directory)

    _sql(campaign_dsn, "INSERT INTO dataset_copies (dataset_id, region_code, s3_uri, status, synced_at)"
         " SELECT dataset_id, %s, %s, 'available', timestamptz '2026-09-01' FROM datasets WHERE dataset_key = %s",
         (*EXTRA_COPY, DATASET))
    try:
        with local_aws(image_map, max_concurrent_jobs=2, max_processes_per_job=2, stop_grace_seconds=5,
                       log_path=airflow_db / "local-aws-parameter-scan.log") as endpoint:
            seed_aws(endpoint, campaign_dsn, samples)
            yield endpoint
    finally:  # the rows that name the extra copy go with it
        _sql(campaign_dsn, "DELETE FROM training_runs WHERE copy_id IN (SELECT copy_id FROM dataset_copies"
             " WHERE s3_uri = %s)", (EXTRA_COPY[1],))
        _sql(campaign_dsn, "DELETE FROM dataset_copies WHERE s3_uri = %s", (EXTRA_COPY[1],))


@pytest.fixture()
def scan_stack(campaign_dsn: str, scan_aws_endpoint: str, airflow_db: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Airflow pointed at Postgres and the emulator; ``scan-alt`` allow-listed; room for
    two g5.12xlarge jobs per training region (so the four jobs need both regions)."""
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=scan_aws_endpoint, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_VAR_MRT_SCAN_ALLOW_LIST", json.dumps({"image_tags": ["local", ALT_TAG]}))
    saved = _sql(campaign_dsn, "SELECT region_code, quota_instances FROM instance_capacity"
                               " WHERE instance_type = %s AND region_code = ANY(%s)",
                 (LOCAL_RUN_CONF["instance_type"], list(TRAINING_REGIONS)))
    _sql(campaign_dsn, "UPDATE instance_capacity SET quota_instances = 2 WHERE instance_type = %s"
                       " AND region_code = ANY(%s)", (LOCAL_RUN_CONF["instance_type"], list(TRAINING_REGIONS)))
    try:
        yield scan_aws_endpoint
    finally:
        for region, quota in saved:
            _sql(campaign_dsn, "UPDATE instance_capacity SET quota_instances = %s WHERE instance_type = %s"
                               " AND region_code = %s", (quota, LOCAL_RUN_CONF["instance_type"], region))


def run_scan(scan: dict[str, Any], **conf: Any) -> tuple[Any, dict[str, list[str]]]:
    return helpers.run_dag({**LOCAL_RUN_CONF, "regions": list(TRAINING_REGIONS), "campaigns": [CAMPAIGN],
                            "purchase_options": ["on_demand"], "scan": scan, **conf})


def _job_log(endpoint: str, region: str, job_name: str) -> str:
    logs = aws_client("logs", endpoint, region)
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    return "\n".join(e["message"] for s in streams for e in logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=s["logStreamName"], startFromHead=True)["events"])


def _entry_point_args(log_text: str) -> dict[str, str]:
    """The arguments the toolkit started the entry point with (its "Invoking script with
    the following command" block: ``mpirun ... python -m mpi4py train.py --k v ...``)."""
    command = next(line for line in log_text.splitlines() if "-m mpi4py train.py" in line)
    tail = command.split("-m mpi4py train.py", 1)[1].split()
    return {tail[i].lstrip("-"): tail[i + 1] for i in range(0, len(tail) - 1, 2) if tail[i].startswith("--")}


def _summary(endpoint: str, run_id: str) -> dict[str, Any]:
    key = f"runs/{training_request.run_key('multi_region_training', run_id)}/summary.json"
    body = aws_client("s3", endpoint, "us-east-1").get_object(Bucket=CENTRAL_BUCKET, Key=key)["Body"].read()
    return json.loads(body)


def test_a_2x2_grid_trains_four_jobs_across_regions_and_ranks_them(scan_stack: str, campaign_dsn: str) -> None:
    endpoint = scan_stack
    dag_run, states = run_scan({"grid": GRID, "metric": "train:accuracy"})
    assert str(dag_run.state) == "success", states
    assert states["train"] == ["success"] * 4

    rows = helpers.rows_of_run(campaign_dsn, dag_run.run_id, "target_key", "region_code", "status", "point_id",
                               "point_overrides", "hyperparameters_sha256", "training_job_name", "entry_point",
                               "metrics", "model_artifact_uri")
    by_point = {r["point_id"]: r for r in rows}
    assert sorted(by_point) == ["p01", "p02", "p03", "p04"]
    # Placed by quota: two jobs fit in each region (us-east-1 is cheaper, so p01, p02 go there).
    assert {p: r["region_code"] for p, r in by_point.items()} == {
        "p01": "us-east-1", "p02": "us-east-1", "p03": "eu-west-1", "p04": "eu-west-1"}
    expected = {"p01": (0.05, 8), "p02": (0.05, 16), "p03": (0.5, 8), "p04": (0.5, 16)}
    jobs = {j["TagMap"]["scan_point"]: j for j in helpers.jobs_of_run(endpoint, dag_run.run_id)}
    assert sorted(jobs) == sorted(expected)
    for point, (lr, batch) in expected.items():
        row, job = by_point[point], jobs[point]
        assert row["status"] == "Completed" and row["target_key"] == f"{DATASET}_{point}"
        assert row["point_overrides"] == {"learning_rate": lr, "batch_size": batch}
        assert row["entry_point"] == "train.py"
        # The request carries the point's values, hashed per job ...
        hps = job["HyperParameters"]
        assert (hps["learning_rate"], hps["batch_size"]) == (str(lr), str(batch))
        assert hps["epochs"] == str(LOCAL_RUN_CONF["epochs"])  # ... the rest is the run's recipe
        assert row["hyperparameters_sha256"] == training_request.hyperparameters_sha256(hps)
        assert job["TagMap"]["target"] == row["target_key"]
        # ... and the entry point got exactly those: the toolkit's command line in the job's log.
        log_text = _job_log(endpoint, row["region_code"], row["training_job_name"])
        args = _entry_point_args(log_text)
        assert {k: args[k] for k in hps if not k.startswith("sagemaker_")} == {
            k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
        assert ALT_MARKER not in log_text
        last = [line for line in log_text.splitlines() if "[metrics] " in line][-1]
        assert f"train_accuracy={row['metrics']['train:accuracy']:.6g}" in last
    assert len({r["hyperparameters_sha256"] for r in rows}) == 4

    summary = _summary(endpoint, dag_run.run_id)
    ranking = summary["scan"]
    assert ranking["metric"] == "train:accuracy" and ranking["higher_is_better"]
    ranked = ranking["datasets"][DATASET]
    values = [by_point[e["point_id"]]["metrics"]["train:accuracy"] for e in ranked]
    assert values == sorted(values, reverse=True) and [e["rank"] for e in ranked] == [1, 2, 3, 4]
    best = ranking["best"][DATASET]
    assert best["point_id"] == ranked[0]["point_id"] and ranked[0]["best"]
    assert f"BEST {DATASET}: {best['point_id']}" in summary["text"]
    # The best model's stable pointer: a server-side copy of its artifact in the central bucket.
    pointer = best["best_model_uri"]
    assert pointer.endswith(f"/best/{DATASET}/model.tar.gz")
    s3 = aws_client("s3", endpoint, "us-east-1")
    bucket, _, key = pointer[len("s3://"):].partition("/")
    source_bucket, _, source_key = by_point[best["point_id"]]["model_artifact_uri"][len("s3://"):].partition("/")
    assert bucket == CENTRAL_BUCKET == source_bucket
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == s3.head_object(Bucket=bucket, Key=source_key)["ETag"]


def test_a_point_with_another_image_tag_runs_that_image(scan_stack: str, campaign_dsn: str) -> None:
    endpoint = scan_stack
    dag_run, states = run_scan({"points": [{"image_tag": ALT_TAG, "learning_rate": 0.25}]},
                               regions=["us-east-1"], max_steps=8)
    assert str(dag_run.state) == "success", states
    [job] = helpers.jobs_of_run(endpoint, dag_run.run_id)
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith(f"/{TRAINING_REPOSITORY}:{ALT_TAG}")
    log_text = _job_log(endpoint, "us-east-1", job["TrainingJobName"])
    assert ALT_MARKER in log_text and "Reporting training SUCCESS" in log_text
    assert _entry_point_args(log_text)["learning_rate"] == "0.25"
    [row] = helpers.rows_of_run(campaign_dsn, dag_run.run_id, "point_id", "point_overrides", "status")
    assert row == {"point_id": "p01", "point_overrides": {"image_tag": ALT_TAG, "learning_rate": 0.25},
                   "status": "Completed"}


def test_an_image_tag_outside_the_allow_list_is_refused_before_launch(
    scan_stack: str, campaign_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dag_run, states = run_scan({"points": [{"learning_rate": 0.1}, {"image_tag": "latest"}]})
    assert str(dag_run.state) == "failed", states
    assert states["select_targets"] == ["failed"]
    assert helpers.jobs_of_run(scan_stack, dag_run.run_id) == []
    assert helpers.rows_of_run(campaign_dsn, dag_run.run_id, "target_key") == []
    out = capsys.readouterr().out
    assert re.search(r"param 'scan' point 2: key 'image_tag' = 'latest' is not on the allow-list", out), out[-3000:]
