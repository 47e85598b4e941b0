"""
### Multi-region distributed training

Nightly, when a dataset becomes ready, or from the trigger form, this DAG trains ResNet-50 with Horovod **where the
data is**: one SageMaker training job per region, all with the same hyperparameters.

1. **select_targets**: the campaign-metadata database places each selected dataset on a
   copy and purchase option (reserved, spot, on-demand) at the lowest expected cost
   within quotas and the budget, with ranked alternatives for failover
   (`include/sql/queries/place_targets.sql`; or the region-local copy,
   `select_targets.sql`); datasets that do not fit are listed, bad rows or Params fail
   here, before anything is launched.
2. **render_array_file**: one `region,s3_uri,...` line per job, stored with the run in S3.
3. **build_requests**: one `CreateTrainingJob` request per line, validated against
   botocore's SageMaker model.
4. **jobs_to_launch**: the jobs to start (none for a dry run), each stored as its own XCom;
   the fan-out expands over references to them, so a try pulls only its own job.
5. **train** (mapped, one task per target, named region + target): the provider's
   `SageMakerTrainingOperator`, made durable (reattach, one new attempt after a failure,
   stop on kill, failover on capacity errors), deferred while the job runs (deferred
   tasks hold no pool slot: only launches are bounded). Resumed when *its* job ends, it
   collects it at once: server-side copy of the model to the central bucket and an
   UPSERT of the result into `training_runs` (a failed job is recorded too).
6. **record_late**: records each launched target whose training task could not (it failed
   or never ran), the same idempotent collection.
7. **summarize** the run (only reads what is recorded: summary and report); **check_regions**
   fails the run naming each planned target that did not complete and get recorded.

Schedule: 02:00 UTC nightly **or** when the asset `mrt_dataset_ready`
(URI `x-mrt://campaign-db/datasets/ready`) gets an event, e.g. from
`python -m regional_training.cli.emit_ready`; the event's `extra` is
`{"campaign_key": ..., "dataset_key": ...}`. An asset-triggered run trains exactly the
datasets named by the events queued since the last run; a nightly or manual run trains
what the Params select. Unpausing never starts a run for a time already past, and the
DAG is paused when first deployed.

Outlets: every completed or reused target emits an `mrt_trained_model` event
(`x-mrt://central-artifacts/models`; `extra`: the central artifact's URI, dataset, region,
job ARN, hyperparameter hash, final metrics, cost) through the alias
`mrt_trained_models`; summarize emits `mrt_run_summary`
(`x-mrt://central-artifacts/run-summaries`). With the Param `reuse_completed_within`
set, a target identical to a job completed within that window is not trained again but
recorded `Reused` (docs/assets-reuse-notifications.md).

Parameter scans: with the Param `scan` (a grid or a list of points) every dataset trains
once per point, each (dataset, point) a job placed like any target; the summary ranks the
points and names the best (docs/parameter-scans.md).

Configuration: connections `campaign_db` and `aws_default`, Variables `mrt_*` (README).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

# The provider modules our operators and hooks build on, and the decorator base of our @task
# (regional_training.runtime.taskflow: TaskFlow without PythonOperator's imports), named here so
# that the dag-processor imports them once in its manager ([dag_processor]
# parsing_pre_import_modules, on by default: it pre-imports the airflow.* modules a DAG
# file names) and every parse's fork inherits them, instead of each parse importing them
# again through regional_training (bench/dag_benchmarks.py measures both ways).
import airflow.providers.amazon.aws.hooks.batch_client
import airflow.providers.amazon.aws.operators.sagemaker
import airflow.providers.amazon.aws.triggers.sagemaker
import airflow.sdk.bases.decorator  # noqa: F401
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, TriggerRule, WeightRule, dag

from regional_training import tasks
from regional_training.launch.batch_jobs import BatchArrayLaunchOperator
from regional_training.operators import DurableSageMakerTrainingOperator
from regional_training.plan.params import param_specs
from regional_training.run import assets, run_keys
from regional_training.runtime.aws_io import AWS_CONN_ID, BOTOCORE_CONFIG
from regional_training.runtime.strict_params import dag_params
from regional_training.runtime.taskflow import task

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=int(os.environ.get("MRT_RETRY_DELAY_SECONDS", "120"))),
    "retry_exponential_backoff": True,
    # Priorities are what each task says (1 unless set), not Airflow's default sum of
    # everything downstream, which ranks a task by how much follows it rather than by
    # what it is (with a collector task per target, every launch outranked every
    # collector: docs/services.md, "The launch pool").
    "weight_rule": WeightRule.ABSOLUTE,
}


#: Seconds between status checks of a training job (the local stack polls faster).
#: Read from the environment, which is not I/O: parsing stays offline.
POLL_SECONDS = int(os.environ.get("MRT_SAGEMAKER_POLL_SECONDS", "60"))


#: The pool that bounds how many training tasks *launch* (create or reattach) at once,
#: across runs: SageMaker's API rate limits. It must leave deferred tasks out
#: (``include_deferred`` false, Airflow's default; ``default_pool`` is such a pool), so
#: jobs being waited on, which the triggerer holds cheaply, take no slot. A deployment
#: creates its own (``airflow pools set mrt_training_launches 16 ...``) and names it here.
TRAINING_POOL = os.environ.get("MRT_TRAINING_POOL", "default_pool")


@dag(
    dag_id="multi_region_training",
    doc_md=__doc__,
    description="Nightly multi-region distributed training (SageMaker, Horovod) where the data is",
    # Nightly or when a dataset becomes ready (assets.DATASET_READY; the docstring has its
    # URI and extra). A trigger timetable that never runs a time already past on unpause:
    # run_immediately=timedelta(0), not False. Airflow 3.3 treats False like None, "run
    # the past time if it is within a tenth of the interval": unpausing between 02:00
    # and 04:24 started that day's 02:00 run (tests/e2e/test_services.py caught it at 02:15).
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC", run_immediately=timedelta(0)),
        assets=assets.DATASET_READY,
    ),
    # No start_date, on purpose: with catchup off, Airflow's CronTriggerTimetable schedules
    # max(the latest past 02:00, the first run after start_date), so any start_date in the
    # past made unpausing start "today's 02:00" at once. Without one, the first run is the
    # next 02:00 (run_immediately, above); later, a 02:00 missed while the scheduler was
    # down still runs once when it comes back (catchup off: only the latest).
    catchup=False,
    is_paused_upon_creation=True,
    max_active_runs=1,
    default_args=default_args,
    # Integer Params validated as draft-04 integers: Airflow itself refuses 3.0 at trigger
    # time. Read-only schemas: the operators' copies of the Params share them.
    params=dag_params(param_specs()),
    tags=["training", "sagemaker", "multi-region", "horovod"],
)
def multi_region_training() -> None:
    # Task ids are run_keys' (the task bodies pull XComs by them): each body's name is its id.
    @task(task_id=run_keys.SELECT_TARGETS, multiple_outputs=True)
    def select_targets() -> dict[str, Any]:
        return tasks.select_targets(tasks.current_run())

    @task(task_id=run_keys.RENDER_ARRAY_FILE)
    def render_array_file(targets: list[dict[str, Any]]) -> str:
        return tasks.render_array_file(tasks.current_run(), targets)

    @task(task_id=run_keys.BUILD_REQUESTS)
    def build_requests(array_uri: str, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return tasks.build_requests(tasks.current_run(), array_uri, targets)

    # Reused targets' model events are emitted here, where they are recorded.
    @task(task_id=run_keys.JOBS_TO_LAUNCH, outlets=[assets.MODEL_ALIAS])
    def jobs_to_launch(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return tasks.jobs_to_launch(tasks.current_run(), jobs)

    # Records every launched target still without a row (its training task failed or never
    # ran), hence the alias: such a target's model is announced here. Returns those rows.
    @task(task_id=run_keys.RECORD_LATE, trigger_rule=TriggerRule.ALL_DONE, outlets=[assets.MODEL_ALIAS])
    def record_late(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return tasks.record_late(tasks.current_run(), rows)

    # Only reads: the summary and report from what the campaign database records.
    @task(task_id=run_keys.SUMMARIZE, trigger_rule=TriggerRule.ALL_DONE, outlets=[assets.RUN_SUMMARY],
          multiple_outputs=False)
    def summarize(jobs: list[dict[str, Any]], left_out: list[dict[str, Any]]) -> dict[str, Any]:
        return tasks.summarize_run(tasks.current_run(), jobs, left_out)

    @task(task_id=run_keys.CHECK_REGIONS, trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def check_regions(run_summary: dict[str, Any] | None, jobs: list[dict[str, Any]], rows: list[dict[str, Any]],
                      left_out: list[dict[str, Any]], late: list[dict[str, Any]] | None) -> None:
        """Watcher: green only when every *planned* target completed and was recorded."""
        tasks.check_regions(tasks.current_run(), run_summary, jobs, rows, left_out, late)

    selection = select_targets()
    array_uri = render_array_file(selection["targets"])
    jobs = build_requests(array_uri, selection["targets"])
    to_launch = jobs_to_launch(jobs)
    # launcher=batch_array: one AWS Batch array job, child N launching array line N.
    launch = BatchArrayLaunchOperator(task_id=run_keys.LAUNCH_BATCH_ARRAY, array_uri=array_uri, jobs=to_launch,
                                      aws_conn_id=AWS_CONN_ID, botocore_config=BOTOCORE_CONFIG)
    # One task per target: it launches (create or reattach), defers while the job runs
    # (deferred tasks hold no pool slot: only launches are bounded) and, resumed when the
    # job ends, collects it. Nothing waits downstream per target: the scheduler
    # re-evaluates every waiting task instance in each loop, which at 500 targets was most
    # of its time (docs/services.md). It follows its deterministic job on retry or clear,
    # waits as long as the stopping condition allows, stops the job when killed
    # (regional_training.operators), and takes its request, region and failover from the
    # job reference: one pull of jobs_to_launch (references) and one of its own job per try.
    train = DurableSageMakerTrainingOperator.partial(
        task_id=run_keys.TRAIN,
        aws_conn_id=AWS_CONN_ID,
        botocore_config=BOTOCORE_CONFIG,
        deferrable=True,
        wait_for_completion=True,
        check_interval=POLL_SECONDS,
        pool=TRAINING_POOL,
        # From the job reference, known before the try starts (region as planned).
        map_index_template="{{ task.job.region }} {{ task.job.target_key }}",
        # The task succeeds only with its target's model collected: its one event is that
        # model (mrt_trained_model). Not the alias: Airflow links an alias to its asset at
        # the first event through it, and tasks ending at once both inserted the link, one
        # failing on the unique key (regional_training.run.assets).
        outlets=[assets.MODEL],
        # launch_batch_array is skipped unless launcher=batch_array (docs/batch.md).
        trigger_rule=TriggerRule.NONE_FAILED,
    ).expand(job=to_launch)
    launch >> train  # batch_array: train follows the job its array child creates
    collected = train.output  # each target's recorded row
    # record_late before summarize: the summary reads every row that could be recorded.
    late = record_late(collected)
    summary = summarize(jobs, selection["left_out"])
    late >> summary
    check_regions(summary, jobs, collected, selection["left_out"], late)

multi_region_training()
