"""The Batch child's refusal (issue 33): a line it cannot launch exits with the documented
code, says what to add, and the launcher job definition does not retry that code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dev.local_aws.batch import exit_action
from regional_training.launch import batch_launcher, batch_resources
from regional_training.launch.job import Job
from regional_training.plan.targets import Target

SEED_FILE = (
    "us-east-1,s3://mrt-campaign-data-us-east-1/datasets/boston-winter-2026/boston-winter-2026-v1/\n"
    "us-west-2,s3://mrt-campaign-data-us-west-2/datasets/seattle-rain-2026/seattle-rain-2026-v1/\n"
    "eu-west-1,s3://mrt-campaign-data-eu-west-1/datasets/dublin-urban-2026/dublin-urban-2026-v1/\n"
    "eu-central-1,s3://mrt-campaign-data-eu-central-1/datasets/munich-autobahn-2026/munich-autobahn-2026-v1/\n"
)
ARGS = ["--array-uri", "s3://central/runs/r/array.csv", "--requests-uri", "s3://central/runs/r/requests.json",
        "--region", "us-east-1"]


def run_child(monkeypatch: pytest.MonkeyPatch, files: dict[str, str], index: str = "1") -> int:
    """main() as a Batch child with these stored files (no AWS: the reads are the files)."""
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", index)
    monkeypatch.setattr(batch_launcher, "_get_text", lambda uri, region: files[uri])

    def no_launch(*_: Any, **__: Any) -> Any:
        raise AssertionError("a refused line must never reach the launcher")

    monkeypatch.setattr(batch_launcher, "Launcher", no_launch)
    return batch_launcher.main(ARGS)


def test_the_seeds_own_file_is_refused_with_exit_2_naming_the_fields_to_add(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    code = run_child(monkeypatch, {"s3://central/runs/r/array.csv": SEED_FILE,
                                   "s3://central/runs/r/requests.json": json.dumps({"jobs": {}})})
    out = caplog.text
    assert code == batch_launcher.EXIT_REFUSED == 2
    assert "Traceback" not in out and not [r for r in caplog.records if r.exc_info]
    assert [r.levelname for r in caplog.records if "Refused" in r.getMessage()] == ["ERROR"]
    assert "Refused (exit 2, not retried): array line 1: expected 5 fields" in out
    assert "add target_key,campaign_key,output_bucket after its 2 field(s)" in out
    assert "Param 'array_file'" in out


@pytest.mark.parametrize(("files", "index", "message"), [
    ({"array": "eu-west-1,s3://data-eu/datasets/c/d/,d,c,out-eu\n", "requests": "{not json"}, "0",
     "Expecting property name"),
    ({"array": "eu-west-1,s3://data-eu/datasets/c/d/,d,c,out-eu\n", "requests": "{}"}, "3",
     "AWS_BATCH_JOB_ARRAY_INDEX=3 but the array file has 1 line(s)"),
    ({"array": "mars-1,s3://data-eu/datasets/c/d/,d,c,out-eu\n", "requests": "{}"}, "0", "field 'region'"),
])
def test_every_deterministic_refusal_exits_2(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                             files: dict[str, str], index: str, message: str) -> None:
    stored = {"s3://central/runs/r/array.csv": files["array"], "s3://central/runs/r/requests.json": files["requests"]}
    assert run_child(monkeypatch, stored, index) == 2
    assert message in caplog.text


def test_a_good_line_still_launches(monkeypatch: pytest.MonkeyPatch) -> None:
    target = Target("eu-west-1", "s3://data-eu/datasets/c/d/", "c", "d", 1, 1, "out-eu")
    from regional_training.plan import array_file

    launched: list[Job] = []

    class Recorder:
        def __init__(self, job: Job, *_: Any, **__: Any) -> None:
            launched.append(job)
            self.terminated = type("E", (), {"set": lambda self: None})()

        def run(self) -> int:
            return 0

    job = {"target": target.to_dict(), "request": {"TrainingJobName": "j"}}
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "0")
    files = {ARGS[1]: array_file.render([target]), ARGS[3]: json.dumps({"jobs": {"d": job}})}
    monkeypatch.setattr(batch_launcher, "_get_text", lambda uri, region: files[uri])
    monkeypatch.setattr(batch_launcher, "Launcher", Recorder)
    assert batch_launcher.main(ARGS) == 0
    assert launched == [Job.from_xcom(job)]


def batch_retries(retry_strategy: dict[str, Any], exit_code: int, attempt: int) -> bool:
    """Whether AWS Batch runs another attempt after ``attempt`` exited ``exit_code``: the
    emulator's rule (``exit_action``: the first matching ``evaluateOnExit`` rule decides,
    none matching retries; docs/emulator.md cites the API reference), never more than
    ``attempts``."""
    if attempt >= retry_strategy["attempts"]:
        return False
    return exit_action(retry_strategy.get("evaluateOnExit") or [], exit_code=exit_code, reason="",
                       status_reason="Essential container in task exited") == "RETRY"


def spec(attempts: int = 3) -> batch_resources.BatchResources:
    return batch_resources.BatchResources(
        central_region="us-east-1", regions=["us-east-1"], image="img:1", job_role_arn="arn:aws:iam::1:role/l",
        execution_role_arn="arn:aws:iam::1:role/e", subnets=["subnet-1"], security_group_ids=["sg-1"],
        attempts=attempts)


def test_the_job_definition_does_not_retry_a_refusal_but_retries_other_failures() -> None:
    strategy = spec(attempts=3).job_definition_request()["retryStrategy"]
    assert strategy["attempts"] == 3
    assert not batch_retries(strategy, batch_launcher.EXIT_REFUSED, attempt=1)  # a refusal: one try only
    assert batch_retries(strategy, 1, attempt=1)  # a failed job, a lost connection: retried
    assert batch_retries(strategy, 143, attempt=2)
    assert not batch_retries(strategy, 1, attempt=3)  # attempts still bound the retries
    # Only exit code 2 exits: "2*" would also swallow 20-29.
    assert not any(batch_retries(strategy, 2, attempt=a) for a in (1, 2))
    assert all(batch_retries(strategy, c, attempt=1) for c in (20, 12, 137))
    # Batch takes at most 5 rules and the glob holds only digits (and a trailing *).
    assert len(strategy["evaluateOnExit"]) <= 5
    assert all(r["onExitCode"].rstrip("*").isdigit() for r in strategy["evaluateOnExit"])
