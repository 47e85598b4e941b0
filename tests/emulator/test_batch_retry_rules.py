"""The emulator's Batch applies ``retryStrategy.evaluateOnExit`` as AWS Batch documents it
(API reference ``EvaluateOnExit`` / ``RetryStrategy``; docs/emulator.md): up to 5 rules,
globs on the exit code, reason and status reason, the first matching rule's action
(RETRY or EXIT, any case) decides, and no match means a retry while attempts remain.
The jobs below are real local processes run by the emulator's own job thread."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dev.local_aws.batch import BatchClientError, BatchEmulator, exit_action
from regional_training.launch.batch_resources import RETRY_RULES

ESSENTIAL = "Essential container in task exited"
(REFUSAL_RULE,) = RETRY_RULES  # the launcher job definition's one rule: exit 2 is not retried


@pytest.mark.parametrize(("rules", "code", "expected"), [
    ([REFUSAL_RULE], 2, "EXIT"),
    ([REFUSAL_RULE], 137, "RETRY"),  # a killed child: no rule matches, retried
    ([REFUSAL_RULE], 20, "RETRY"),  # "2" is exact; only "2*" would take 20
    ([{"onExitCode": "2*", "action": "exit"}], 20, "EXIT"),  # prefix glob, action in any case
    ([], 2, "RETRY"),
    # The first matching rule wins, whatever later ones say.
    ([{"onExitCode": "1*", "action": "RETRY"}, {"onExitCode": "*", "action": "EXIT"}], 137, "RETRY"),
    ([{"onExitCode": "1*", "action": "RETRY"}, {"onExitCode": "*", "action": "EXIT"}], 2, "EXIT"),
    # Every condition of a rule must match.
    ([{"onExitCode": "2", "onStatusReason": "Task failed*", "action": "EXIT"}], 2, "RETRY"),
    ([{"onExitCode": "2", "onStatusReason": "Essential*", "action": "EXIT"}], 2, "EXIT"),
    ([{"onReason": "OutOfMemoryError*", "action": "EXIT"}], 2, "RETRY"),
    ([{"onReason": "*", "action": "EXIT"}], 2, "EXIT"),
])
def test_the_first_matching_rule_decides_and_no_match_retries(rules: list[dict[str, Any]], code: int,
                                                              expected: str) -> None:
    assert exit_action(rules, exit_code=code, reason="", status_reason=ESSENTIAL) == expected


def emulator(tmp_path: Path, retry_strategy: dict[str, Any] | None) -> BatchEmulator:
    batch = BatchEmulator(endpoint_url="http://127.0.0.1:1", workdir=tmp_path, stop_grace_seconds=1)
    batch.create_job_queue("us-east-1", {"jobQueueName": "q"})
    batch.register_job_definition("us-east-1", {
        "jobDefinitionName": "exits", "parameters": {"code": "0"},
        "containerProperties": {"command": ["python", "-c", "import sys; sys.exit(int(sys.argv[1]))", "Ref::code"]},
        **({"retryStrategy": retry_strategy} if retry_strategy else {})})
    return batch


def run(batch: BatchEmulator, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Submit, wait for every job (array children) to end, return their descriptions."""
    job_id = batch.submit_job("us-east-1", {"jobName": "j", "jobQueue": "q", "jobDefinition": "exits", **body})["jobId"]
    ids = [c.job_id for c in batch.arrays[job_id].children] if job_id in batch.arrays else [job_id]
    deadline = time.monotonic() + 60
    while any(d["status"] not in ("SUCCEEDED", "FAILED") for d in batch.describe_jobs(ids)):
        assert time.monotonic() < deadline, batch.describe_jobs(ids)
        time.sleep(0.05)
    return batch.describe_jobs(ids)


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_a_refusal_runs_once_and_any_other_exit_uses_its_attempts(tmp_path: Path) -> None:
    batch = emulator(tmp_path, {"attempts": 3, "evaluateOnExit": [REFUSAL_RULE]})
    (refused,) = run(batch, {"parameters": {"code": "2"}})
    assert refused["status"] == "FAILED" and refused["statusReason"] == ESSENTIAL
    assert [a["container"]["exitCode"] for a in refused["attempts"]] == [2]
    assert refused["retryStrategy"] == {"attempts": 3, "evaluateOnExit": [REFUSAL_RULE]}
    (failed,) = run(batch, {"parameters": {"code": "1"}})
    assert [a["container"]["exitCode"] for a in failed["attempts"]] == [1, 1, 1]
    # Array children follow the same rules, each on its own.
    children = run(batch, {"parameters": {"code": "2"}, "arrayProperties": {"size": 2}})
    assert [len(c["attempts"]) for c in children] == [1, 1]


def test_the_submits_retry_strategy_overrides_the_definitions_rules(tmp_path: Path) -> None:
    batch = emulator(tmp_path, {"attempts": 3, "evaluateOnExit": [REFUSAL_RULE]})
    (job,) = run(batch, {"parameters": {"code": "2"}, "retryStrategy": {"attempts": 2}})
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [2, 2]
    assert job["retryStrategy"] == {"attempts": 2}


@pytest.mark.parametrize(("strategy", "message"), [
    ({"attempts": 2, "evaluateOnExit": [REFUSAL_RULE] * 6}, "at most 5"),
    ({"attempts": 2, "evaluateOnExit": [{"onExitCode": "2", "action": "STOP"}]}, "not RETRY or EXIT"),
    ({"attempts": 2, "evaluateOnExit": [{"onExitCode": "2?", "action": "EXIT"}]}, "only digits"),
    ({"evaluateOnExit": [REFUSAL_RULE]}, "needs retryStrategy.attempts"),
])
def test_a_strategy_batch_would_refuse_is_refused(tmp_path: Path, strategy: dict[str, Any], message: str) -> None:
    with pytest.raises(BatchClientError, match=message):
        emulator(tmp_path, strategy)
    batch = emulator(tmp_path, None)
    with pytest.raises(BatchClientError, match=message):
        batch.submit_job("us-east-1", {"jobName": "j", "jobQueue": "q", "jobDefinition": "exits",
                                       "retryStrategy": strategy})
