"""Test-only DAG: one training task that stays between ``CreateTrainingJob`` and its deferral.

Loaded by tests/e2e/test_celery_stack.py as part of a test DAG bundle, never deployed.
The real operator creates its job, then this subclass holds the try in the window
before ``defer`` for ``window_seconds`` (a Param): the moment a component shutdown's
SIGTERM used to reach ``on_kill`` and stop the job just created (issue 32). The request
is the stand-in's (``image_repository`` Param), built when the try runs: the DAG's parse
does no I/O.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param

from regional_training.operators import DurableSageMakerTrainingOperator

DAG_ID = "mrt_launch_window"


class LaunchWindowOperator(DurableSageMakerTrainingOperator):
    """The training operator, with a pause after creating the job and before deferring."""

    def _start(self, context: Any) -> None:
        """Every entry point (the first try, a resumed try, a retry) builds the request."""
        super()._start(context)
        from regional_training.plan.targets import Target
        from regional_training.plan.training_request import build_request, sagemaker_hyperparameters
        from regional_training.runtime.settings import settings_from_mapping

        params = context["params"]
        settings = settings_from_mapping({
            "mrt_aws_account_id": "123456789012",
            "mrt_sagemaker_role_arn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
            "mrt_training_image_repository": params["image_repository"],
            "mrt_training_image_tag": "local",
            "mrt_central_bucket": "mrt-central-artifacts",
            "mrt_central_region": "us-east-1",
        })
        target = Target("us-east-1", params["data_uri"], "window", params["job_name"], 1, 1, "mrt-central-artifacts")
        hps = sagemaker_hyperparameters({"max_steps": 5, "seconds": params["job_seconds"]}, processes_per_host=1)
        request = build_request(target=target, settings=settings, hyperparameters=hps, dag_id=DAG_ID,
                                run_id=params["job_name"], instance_type="ml.g5.12xlarge", instance_count=1,
                                volume_size_gb=10, max_runtime_seconds=3600)
        self.config = {**request, "TrainingJobName": params["job_name"]}
        self.region_name = "us-east-1"
        self.window_seconds = float(params["window_seconds"])

    def _create(self, candidate: Any, name: str) -> None:
        super()._create(candidate, name)
        self.log.info("Job %s created; in the launch window for %.0f s before deferring.", name, self.window_seconds)
        time.sleep(self.window_seconds)


with DAG(
    DAG_ID, schedule=None, catchup=False, tags=["test"],
    params={"job_name": Param("window-0", type="string"), "window_seconds": Param(40, type="number"),
            "job_seconds": Param(20, type="number"), "data_uri": Param("", type="string"),
            "image_repository": Param("", type="string")},
):
    LaunchWindowOperator(task_id="train", config={}, region_name="us-east-1", aws_conn_id="aws_default",
                         check_interval=2, retries=1, retry_delay=timedelta(seconds=2))
