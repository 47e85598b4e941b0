"""The emulator's HTTP layer (local_aws.wire): operation routing by botocore's model, the
response check against the output shapes, the services' own throttling errors.

The middleware is served by werkzeug around a tiny WSGI app that answers whatever a test
gives it, so a deliberately broken response can be sent to a real boto3 client.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from werkzeug.serving import make_server

from dev.local_aws.lifecycles import ApiThrottle, LifecycleConfig
from dev.local_aws.wire import ApiMiddleware, Call, conformance_errors, response_errors, rest_operation, service_model

Answer = tuple[str, list[tuple[str, str]], bytes]


def _describe_call() -> Call:
    operation = service_model("sagemaker").operation_model("DescribeTrainingJob")
    return Call("sagemaker", "us-east-1", "json", operation, b"")


def _job(**overrides: Any) -> dict[str, Any]:
    job = {
        "TrainingJobName": "j", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/j/output/model.tar.gz"},
        "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 10}, "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "CreationTime": 1796630000.0,
    }
    return {**job, **overrides}


def test_a_conforming_response_has_no_errors() -> None:
    body = json.dumps(_job(BillableTimeInSeconds=3)).encode()
    assert response_errors(_describe_call(), 200, [("Content-Type", "application/x-amz-json-1.1")], body) == []


def test_missing_required_members_bad_enums_and_types_are_caught() -> None:
    job = _job(TrainingJobStatus="Running", BillableTimeInSeconds="3")
    del job["ModelArtifacts"]
    errors = response_errors(_describe_call(), 200, [], json.dumps(job).encode())
    assert "DescribeTrainingJobResponse.ModelArtifacts: required member missing" in errors
    assert any(e.startswith("DescribeTrainingJobResponse.TrainingJobStatus: 'Running' is not one of") for e in errors)
    assert any(e.startswith("DescribeTrainingJobResponse.BillableTimeInSeconds: expected integer, got str")
               for e in errors)
    assert len(errors) == 3
    unparseable = response_errors(_describe_call(), 200, [], json.dumps(_job(CreationTime="yesterday")).encode())
    assert unparseable and unparseable[0].startswith("unparseable 200 response")


def test_nested_shapes_are_walked() -> None:
    shape = service_model("sagemaker").operation_model("DescribeTrainingJob").output_shape
    job = _job(SecondaryStatusTransitions=[{"Status": "Training", "StartTime": datetime(2026, 1, 1)},
                                           {"StartTime": datetime(2026, 1, 1)}])
    job["CreationTime"] = datetime(2026, 1, 1)
    assert conformance_errors(job, shape) == [
        "DescribeTrainingJobResponse.SecondaryStatusTransitions[1].Status: required member missing"]


@pytest.mark.parametrize(("method", "path", "query", "headers", "operation"), [
    ("GET", "/bucket-a", {"list-type": ["2"]}, {}, "ListObjectsV2"),
    ("GET", "/bucket-a", {}, {}, "ListObjects"),
    ("GET", "/bucket-a/some/key", {"x-id": ["GetObject"]}, {}, "GetObject"),
    ("PUT", "/bucket-a/k", {"x-id": ["PutObject"]}, {}, "PutObject"),
    ("PUT", "/bucket-a/k", {"x-id": ["CopyObject"]}, {"x-amz-copy-source": "b/k"}, "CopyObject"),
    ("PUT", "/bucket-a/k", {"partNumber": ["1"], "uploadId": ["u"], "x-id": ["UploadPartCopy"]},
     {"x-amz-copy-source": "b/k"}, "UploadPartCopy"),
    ("HEAD", "/bucket-a/k", {}, {}, "HeadObject"),
    ("HEAD", "/bucket-a", {}, {}, "HeadBucket"),
])
def test_s3_requests_map_to_their_operation(method: str, path: str, query: dict[str, list[str]],
                                            headers: dict[str, str], operation: str) -> None:
    assert rest_operation("s3", method, path, query, headers).name == operation


def test_rest_json_requests_map_to_their_operation() -> None:
    assert rest_operation("batch", "POST", "/v1/submitjob", {}, {}).name == "SubmitJob"
    assert rest_operation("batch", "POST", "/v1/describejobs", {}, {}).name == "DescribeJobs"


def test_api_throttle_pattern() -> None:
    pattern = ApiThrottle(burst=2, every=5, after=1)
    assert [pattern.refuses(n) for n in range(1, 12)] == [
        False, True, True, False, False, False, True, True, False, False, False]
    assert [ApiThrottle(burst=1).refuses(n) for n in (1, 2, 3)] == [True, False, False]
    with pytest.raises(ValueError, match="must exceed burst"):
        ApiThrottle(burst=3, every=3)


# --- through a real client ----------------------------------------------------------------
class _Fixed:
    """A WSGI app that answers the next response a test set (the stand-in for moto)."""

    def __init__(self) -> None:
        self.answer: Answer = ("200 OK", [], b"")
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.calls += 1
        status, headers, body = self.answer
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., tuple[str, _Fixed, Path]]]:
    servers: list[Any] = []

    def serve(lifecycles: dict[str, Any] | None = None) -> tuple[str, _Fixed, Path]:
        app, violations = _Fixed(), tmp_path / f"violations-{len(servers)}.jsonl"
        middleware = ApiMiddleware(app, lifecycles=LifecycleConfig.model_validate(lifecycles or {}),
                                   violations_path=str(violations))
        server = make_server("127.0.0.1", 0, middleware, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}", app, violations

    yield serve
    for server in servers:
        server.shutdown()


def _client(service: str, url: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def test_a_broken_response_fails_the_call_and_is_recorded(served: Any) -> None:
    url, app, violations = served()
    broken = _job(TrainingJobStatus="Running")
    app.answer = ("200 OK", [("Content-Type", "application/x-amz-json-1.1")], json.dumps(broken).encode())
    with pytest.raises(botocore.exceptions.ClientError) as failed:
        _client("sagemaker", url).describe_training_job(TrainingJobName="j")
    assert failed.value.response["Error"]["Code"] == "EmulatorResponseInvalid"
    assert "'Running' is not one of" in failed.value.response["Error"]["Message"]
    recorded = [json.loads(line) for line in violations.read_text().splitlines()]
    assert [(r["operation"], r["status"]) for r in recorded] == [("sagemaker:DescribeTrainingJob", 200)]
    # The same call answered correctly goes through, unchanged, and is not recorded.
    app.answer = ("200 OK", [("Content-Type", "application/x-amz-json-1.1")], json.dumps(_job()).encode())
    assert _client("sagemaker", url).describe_training_job(TrainingJobName="j")["TrainingJobStatus"] == "InProgress"
    assert len(violations.read_text().splitlines()) == 1


# Sources (docs/emulator.md): S3 API reference, Error responses ("SlowDown ... 503 Slow
# Down"); the Common Errors page of the CloudWatch Logs, SageMaker and Batch API references
# ("ThrottlingException ... HTTP Status Code: 400"); botocore's sns model (ThrottledException,
# code "Throttled", httpStatusCode 429).
@pytest.mark.parametrize(("service", "call", "status", "code"), [
    ("s3", lambda c: c.get_object(Bucket="bucket-a", Key="k"), 503, "SlowDown"),
    ("logs", lambda c: c.get_log_events(logGroupName="g", logStreamName="s"), 400, "ThrottlingException"),
    ("sagemaker", lambda c: c.describe_training_job(TrainingJobName="j"), 400, "ThrottlingException"),
    ("batch", lambda c: c.describe_jobs(jobs=["x"]), 400, "ThrottlingException"),
    ("sns", lambda c: c.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:t", Message="m"), 429, "Throttled"),
])
def test_each_service_is_throttled_with_its_own_error(served: Any, service: str, call: Callable[[Any], Any],
                                                      status: int, code: str) -> None:
    url, app, violations = served({"api_throttle": {f"{service}:*": {"burst": 1}}})
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        call(_client(service, url))
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert refused.value.response["Error"]["Code"] == code
    assert app.calls == 0  # refused before the backend saw it
    assert not violations.exists()
