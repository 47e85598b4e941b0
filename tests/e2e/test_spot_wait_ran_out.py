"""A managed spot job whose wait runs out, through the real DAG (``dag.test``), the
emulator as a server and the campaign database (issue 33, item 3).

Boston, spot only: the plan puts it on us-west-2 spot with us-east-1 spot as its
failover. The emulator never launches us-west-2's spot instances: the job waits in
``Starting`` ("Insufficient capacity error from EC2 ...") until its wait runs out and
ends ``Stopped`` / ``MaxWaitTimeExceeded``, as SageMaker's Managed Spot Training
Lifecycle says. That is a capacity signal:

* with an alternative left the target fails over within the same try, and the move
  records SageMaker's ``MaxWaitTimeExceeded`` and message;
* with none (``max_failovers`` 0) the training task fails at its first try, without
  Airflow's retries (they would find the same ended job and create none), and the
  target's row says ``MaxWaitTimeExceeded`` in SageMaker's words, not "job ended Stopped".

Either way the starved candidate has exactly one job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from helpers import jobs_of_run, rows_of_run, run_dag

from dev.local_stack import LOCAL_RUN_CONF, fake_image_map, local_aws, seed_aws

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

A, B = "us-west-2", "us-east-1"
LIFECYCLES = {"regions": {A: {"spot_never_launched": True, "max_wait_seconds": 3}}}
CONF = {**LOCAL_RUN_CONF, "placement": "cheapest", "campaigns": ["boston-winter-2026"], "purchase_options": ["spot"]}


@pytest.fixture(scope="module")
def spot_starved_in_a(campaign_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("aws") / "local-aws.log"
    with local_aws(fake_image_map(), lifecycles=LIFECYCLES, log_path=log) as endpoint:
        seed_aws(endpoint, campaign_dsn)
        yield endpoint


@pytest.fixture()
def stack(spot_starved_in_a: str, campaign_dsn: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from dev.local_stack import in_process_env

    for key, value in in_process_env(dsn=campaign_dsn, endpoint=spot_starved_in_a, airflow_home=airflow_db).items():
        monkeypatch.setenv(key, value)
    return spot_starved_in_a


def _moves(dsn: str, run_id: str) -> list[tuple[str, str | None, str, str]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT from_region, to_region, error_code, error_message FROM placement_moves"
                        " WHERE run_id = %s ORDER BY move_number", (run_id,))
            return cur.fetchall()
    finally:
        conn.close()


def test_the_wait_running_out_fails_over_with_sagemakers_reason(stack: str, campaign_dsn: str) -> None:
    dag_run, states = run_dag(CONF)
    assert str(dag_run.state) == "success" and states["train"] == ["success"], states
    train = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "train")
    assert train.try_number == 1  # moved within the try: no retry
    jobs = {j["Region"]: j for j in jobs_of_run(stack, dag_run.run_id)}
    assert sorted(jobs) == [B, A]  # one job per candidate: no second job in the starved region
    assert (jobs[A]["TrainingJobStatus"], jobs[A]["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")
    ((from_region, to_region, code, message),) = _moves(campaign_dsn, dag_run.run_id)
    assert (from_region, to_region, code) == (A, B, "MaxWaitTimeExceeded")
    assert message.startswith("MaxWaitTimeExceeded: "), message
    (row,) = rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status", "failure_reason")
    assert row == {"region_code": B, "status": "Completed", "failure_reason": None}


def test_no_candidate_left_fails_the_task_without_retries_in_sagemakers_words(stack: str, campaign_dsn: str) -> None:
    dag_run, states = run_dag({**CONF, "max_failovers": 0})
    assert states["train"] == ["failed"], states
    train = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "train")
    # Failed at its first try: Airflow's two retries (retries=2, 1 s apart here) never ran.
    assert (train.try_number, train.max_tries) == (1, 2)
    jobs = jobs_of_run(stack, dag_run.run_id)
    assert [(j["Region"], j["SecondaryStatus"]) for j in jobs] == [(A, "MaxWaitTimeExceeded")]
    assert not jobs[0]["TrainingJobName"].endswith("-a2")
    (row,) = rows_of_run(campaign_dsn, dag_run.run_id, "region_code", "status", "attempt", "failure_reason")
    assert (row["region_code"], row["status"], row["attempt"]) == (A, "Stopped", 1)
    assert row["failure_reason"].startswith("MaxWaitTimeExceeded: "), row
    assert "job ended Stopped" not in row["failure_reason"]
    ((_, to_region, code, _),) = _moves(campaign_dsn, dag_run.run_id)
    assert (to_region, code) == (None, "MaxWaitTimeExceeded")
