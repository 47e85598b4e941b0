"""Where a run's files live in S3, in one place.

Central bucket, one prefix per DAG run (``runs/<dag_id>/<run>-<digest>/``):

* ``array.csv``: the array file (one line per training job);
* ``summary.json``: the run summary; ``report.html``: the run report;
* ``artifacts/<target>/model.tar.gz``: each target's model, copied server-side.

Each region's output bucket: ``training-jobs/`` (SageMaker's output path) and
``checkpoints/<run key>/<target>/`` (checkpoints unique to the run and target).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

ARRAY_FILE = "array.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


def run_key(dag_id: str, run_id: str) -> str:
    """A path-safe, unique key for a DAG run (run ids contain ':' and '+')."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-")
    digest = hashlib.sha256(f"{dag_id}\0{run_id}".encode()).hexdigest()[:8]
    return f"{dag_id}/{safe}-{digest}"


@dataclass(frozen=True)
class RunLayout:
    """One run's files in the central bucket."""

    central_bucket: str
    dag_id: str
    run_id: str

    @property
    def prefix(self) -> str:
        return f"runs/{run_key(self.dag_id, self.run_id)}/"

    def uri(self, name: str) -> str:
        return f"s3://{self.central_bucket}/{self.prefix}{name}"

    @property
    def array_file(self) -> str:
        return self.uri(ARRAY_FILE)

    @property
    def summary(self) -> str:
        return self.uri(SUMMARY_FILE)

    @property
    def report(self) -> str:
        return self.uri(REPORT_FILE)

    def artifact(self, target_key: str) -> str:
        return self.uri(f"artifacts/{target_key}/model.tar.gz")


def output_path(output_bucket: str) -> str:
    """SageMaker's ``S3OutputPath`` in a region's output bucket."""
    return f"s3://{output_bucket}/training-jobs/"


def checkpoint_uri(output_bucket: str, dag_id: str, run_id: str, target_key: str) -> str:
    """Same-region checkpoints, unique per run and target."""
    return f"s3://{output_bucket}/checkpoints/{run_key(dag_id, run_id)}/{target_key}/"
