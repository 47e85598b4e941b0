"""Links from the Airflow UI: a training task to its job and log stream, a run to its report.

The ``train`` operator pushes the job it is on to XCom under :data:`TRAINING_JOB_KEY`
every time it switches (create, reattach, a new attempt, a failover move) with
:func:`persist_training_job`; the links name the newest job, so after a failover they
point at the job in the region it moved to (read from the operator at the end of a try,
else from that XCom). The value is the Amazon provider's
``BaseAwsLink`` shape (``region_name``, ``aws_domain``) plus ``job_name`` and ``attempt``.

Offline (the local stack) set ``MRT_LINKS_BASE_URL`` to the campaign view's URL (e.g.
``http://127.0.0.1:8080/campaign``): the same links then open the emulator's job
description, log stream and the report through it, never the AWS console. The report
link always goes through the campaign view (S3 serves no pages to people).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, quote_plus

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink
from airflow.sdk import BaseOperatorLink

from regional_training.run.run_keys import SUMMARIZE

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.definitions.taskinstancekey import TaskInstanceKey

#: XCom key of the job the train task is on now: ``{"region_name", "aws_domain",
#: "job_name", "attempt"}``.
TRAINING_JOB_KEY = "mrt_training_job"
#: The campaign view's base URL; set offline, links go there instead of the console.
LINKS_BASE_URL_ENV = "MRT_LINKS_BASE_URL"
#: Mount point of the campaign view in the API server (plugins/campaign_view).
CAMPAIGN_VIEW_PREFIX = "/campaign"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: The DAG's summary task: the one task the report link belongs to (run_keys has every task id).
SUMMARIZE_TASK_ID = SUMMARIZE


def offline_base_url() -> str | None:
    """``MRT_LINKS_BASE_URL`` without a trailing slash, or ``None`` (AWS console links)."""
    value = os.environ.get(LINKS_BASE_URL_ENV, "").strip()
    return value.rstrip("/") or None


def training_job_url(region: str, job_name: str, aws_domain: str | None = "aws.amazon.com") -> str:
    base = offline_base_url()
    if base:
        return f"{base}/jobs/{quote(region)}/{quote(job_name)}"
    console = BASE_AWS_CONSOLE_LINK.format(aws_domain=aws_domain or "aws.amazon.com")
    return f"{console}/sagemaker/home?region={region}#/jobs/{quote(job_name)}"


def log_stream_url(region: str, job_name: str, aws_domain: str | None = "aws.amazon.com") -> str:
    """The job's log streams (one per host: ``<job>/algo-<n>-<epoch>``, so a prefix)."""
    base = offline_base_url()
    if base:
        return f"{base}/logs/{quote(region)}/{quote(job_name)}"
    console = BASE_AWS_CONSOLE_LINK.format(aws_domain=aws_domain or "aws.amazon.com")
    return (f"{console}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{quote_plus(LOG_GROUP)}"
            f"/log-events$3FlogStreamNameFilter$3D{quote_plus(job_name)}")


def report_url(dag_id: str, run_id: str, api_base_url: str | None = None) -> str:
    """The run's report, served by the campaign view (``api_base_url``: Airflow's
    ``[api] base_url``; ``MRT_LINKS_BASE_URL`` wins when set)."""
    base = offline_base_url() or f"{(api_base_url or '').rstrip('/')}{CAMPAIGN_VIEW_PREFIX}"
    return f"{base}/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/report"


def persist_training_job(context: Context, operator: BaseOperator, *, region_name: str, job_name: str,
                         attempt: int, aws_partition: str = "aws") -> None:
    """Record the job the train task is on now (called by the operator on every switch;
    ``aws_partition``: the hook's ``conn_partition``, for the console's domain)."""
    SageMakerTrainingJobLink.persist(context, operator, region_name=region_name, aws_partition=aws_partition,
                                     job_name=job_name, attempt=attempt)


class _CurrentJobLink(BaseAwsLink):
    """A link to the job the train task is on (:data:`TRAINING_JOB_KEY`)."""

    key = TRAINING_JOB_KEY
    format_str = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # At the end of each try the worker formats the links and stores them (the UI reads
        # those): the operator knows its job then, so no XCom is read back for it.
        linked = getattr(operator, "linked_job", None)
        if isinstance(linked, tuple) and len(linked) == 2:
            return self.format_link(region_name=linked[0], job_name=linked[1],
                                    aws_domain=self.get_aws_domain("aws"))
        return super().get_link(operator, ti_key=ti_key)


class SageMakerTrainingJobLink(_CurrentJobLink):
    """The train task's current job in the SageMaker console of its own region."""

    name = "SageMaker training job"

    def format_link(self, **kwargs: Any) -> str:
        if not kwargs.get("job_name") or not kwargs.get("region_name"):
            return ""
        return training_job_url(kwargs["region_name"], kwargs["job_name"], kwargs.get("aws_domain"))


class TrainingJobLogsLink(_CurrentJobLink):
    """The train task's current job's CloudWatch log streams, in its own region."""

    name = "Training job logs"

    def format_link(self, **kwargs: Any) -> str:
        if not kwargs.get("job_name") or not kwargs.get("region_name"):
            return ""
        return log_stream_url(kwargs["region_name"], kwargs["job_name"], kwargs.get("aws_domain"))


def _partition_of(region: str) -> str:
    """The AWS partition of a region code (botocore's partitions, by their prefixes)."""
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


class BatchArrayJobLink(BaseAwsLink):
    """``launch_batch_array``'s array job in the Batch console, formatted from the operator.

    The provider's Batch links are each read back from an XCom at the end of every try (the
    task SDK's ``finalize``); a try that reattaches persists none, and a skipped try
    (launcher other than ``batch_array``: every default run) none either. Each missing one
    was an error-level "XCom not found" line in the scheduler's log. This link reads no XCom:
    the operator holds the job it submitted or reattached to (``job_id``, ``region_name``)
    when its try ends, and a try without one has no link (``""``).
    """

    name = "Batch Job Details"  # the provider's name and key: the same link in the UI
    key = "batch_job_details"
    format_str = BASE_AWS_CONSOLE_LINK + "/batch/home?region={region_name}#jobs/detail/{job_id}"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        job_id, region = getattr(operator, "job_id", None), getattr(operator, "region_name", None)
        if not job_id or not region:
            return ""
        return self.format_link(region_name=region, job_id=job_id,
                                aws_domain=self.get_aws_domain(_partition_of(str(region))))


class RunReportLink(BaseOperatorLink):
    """The ``summarize`` task's link to the run's report (needs only the task's own key).

    Resolved where it is asked for (worker or API server) from the run's ids and
    Airflow's ``[api] base_url``; any other task gets no link.
    """

    name: ClassVar[str] = "Run report"  # type: ignore[misc]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.configuration import conf

        if ti_key.task_id != SUMMARIZE_TASK_ID:
            return ""
        return report_url(ti_key.dag_id, ti_key.run_id, conf.get("api", "base_url", fallback=""))


def report_links(
    summary: dict[str, Any], *, dag_id: str, api_base_url: str | None = None
) -> dict[str, dict[str, str]]:
    """Links for the report: per target key its job, logs and model; ``""``: the run."""
    out: dict[str, dict[str, str]] = {"": {"this report": report_url(dag_id, summary["run_id"], api_base_url)}}
    for row in summary.get("rows") or []:
        items = {}
        if row.get("training_job_arn"):
            items["SageMaker job"] = training_job_url(row["region_code"], row["training_job_name"])
            items["logs"] = log_stream_url(row["region_code"], row["training_job_name"])
        if row.get("model_artifact_uri"):
            items["model"] = row["model_artifact_uri"]
        out[row["target_key"]] = items
    return out
