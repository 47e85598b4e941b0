"""aws_sessions: the provider's hooks on one botocore loader per process.

Each check runs in a fresh interpreter, as a service or a task try starts: the provider
resolves ``[aws] session_factory`` once, when its ``base_aws`` module is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

FACTORY = "regional_training.runtime.aws_sessions.SharedLoaderSessionFactory"


def _run(code: str, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {"conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret-example",
             "extra": {"endpoint_url": "http://127.0.0.1:9"}}), **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


HOOKS = """
    import json
    from airflow.providers.amazon.aws.hooks.base_aws import SessionFactory
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from regional_training import aws_sessions

    loaders, endpoints = [], []
    for region in ("us-west-2", "eu-central-1", "us-west-2"):
        for hook_class in (SageMakerHook, S3Hook):
            client = hook_class(aws_conn_id="aws_default", region_name=region).conn
            loaders.append(client._loader is aws_sessions.LOADER)
            endpoints.append([client.meta.region_name, client.meta.endpoint_url])
    print(json.dumps({"factory": SessionFactory.__module__ + "." + SessionFactory.__name__,
                      "shared": loaders, "endpoints": endpoints,
                      "search_paths": aws_sessions.LOADER.search_paths}))
"""


def test_every_hook_session_shares_the_process_loader() -> None:
    out = _run(HOOKS, AIRFLOW__AWS__SESSION_FACTORY=FACTORY)
    assert out["factory"] == FACTORY
    assert out["shared"] == [True] * 6
    # Region and endpoint are still each hook's own.
    assert [e[0] for e in out["endpoints"]] == ["us-west-2", "us-west-2", "eu-central-1", "eu-central-1",
                                                 "us-west-2", "us-west-2"]
    assert {e[1] for e in out["endpoints"]} == {"http://127.0.0.1:9"}
    # boto3 adds its data directory once, not once per session.
    assert len(out["search_paths"]) == len(set(out["search_paths"]))


def test_without_the_setting_the_provider_keeps_its_own_factory() -> None:
    out = _run(HOOKS, AIRFLOW__AWS__SESSION_FACTORY="")
    assert out["factory"] == "airflow.providers.amazon.aws.hooks.base_aws.BaseSessionFactory"
    assert out["shared"] == [False] * 6


def test_search_paths_do_not_grow_with_sessions() -> None:
    out = _run("""
        import json
        from regional_training import aws_sessions
        before = list(aws_sessions.LOADER.search_paths)
        aws_sessions.shared_boto3_session(region_name="us-east-1")
        once = list(aws_sessions.LOADER.search_paths)
        for _ in range(5):
            aws_sessions.shared_boto3_session(region_name="us-east-1")
        print(json.dumps({"before": before, "once": once, "after": list(aws_sessions.LOADER.search_paths)}))
    """)
    assert out["after"] == out["once"]
    assert len(out["once"]) == len(set(out["once"])) == len(out["before"]) + 1


def test_sessions_get_botocore_s_own_handlers_and_do_not_share_them() -> None:
    """A session on the copied built-in handlers has exactly the handlers of a session made
    the default way, for every event a SageMaker or S3 client emits; a handler one session
    registers (as boto3 does per session) reaches no other session."""
    out = _run("""
        import json
        import re
        import boto3.session
        import botocore.session
        from regional_training import aws_sessions

        def named(handler):  # per-client objects (signer, retry handler) differ only by address
            return re.sub(r" at 0x[0-9a-f]+", "", repr(handler))

        def handlers(session):
            core = session._session
            client = session.client("sagemaker", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
            s3 = session.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
            out = {}
            for c in (client, s3):
                svc = c.meta.service_model.service_name
                for op in c.meta.service_model.operation_names:
                    for stage in ("provide-client-params", "before-parameter-build", "before-call",
                                  "after-call", "needs-retry", "request-created", "before-sign",
                                  "choose-signer", "before-send", "before-endpoint-resolution"):
                        name = f"{stage}.{c.meta.service_model.service_id.hyphenize()}.{op}"
                        out[name] = [named(h) for h in c.meta.events._emitter._handlers.prefix_search(name)]
                out[svc] = [named(h) for h in core.get_component("event_emitter")._emitter._handlers.prefix_search(
                    f"creating-client-class.{svc}")]
            return out

        plain = boto3.session.Session(botocore_session=botocore.session.get_session(), region_name="us-east-1")
        shared = aws_sessions.shared_boto3_session(region_name="us-east-1")
        other = aws_sessions.shared_boto3_session(region_name="us-east-1")
        def marker(**kwargs):
            return None

        shared._session.register("before-call.sagemaker.DescribeTrainingJob", marker, unique_id="only-in-shared")
        mark = "before-call.sagemaker.DescribeTrainingJob"
        print(json.dumps({"plain": handlers(plain), "other": handlers(other), "events": len(handlers(plain)),
                          "shared_has": any("marker" in repr(h) for h in
                                            shared._session.get_component("event_emitter")._emitter._handlers
                                            .prefix_search(mark))}))
    """)
    assert out["events"] > 1000
    assert out["other"] == out["plain"]
    assert out["shared_has"] is True  # registered where asked, and (above) not in another session
