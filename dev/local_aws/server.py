"""Start the local AWS emulator: ``python -m dev.local_aws.server`` from the repository root
(or with it on ``PYTHONPATH``; ``regional_training`` installed or ``plugins`` on it too).

A moto server (all services, all regions, one endpoint) with the training-job
lifecycle of :mod:`dev.local_aws.training_jobs` patched in and :mod:`dev.local_aws.wire` in
front (throttling, lost responses, the botocore response check). Runs until
SIGINT/SIGTERM. docs/emulator.md lists every behaviour added to moto with its source.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from dev.local_aws.batch import BatchEmulator
from dev.local_aws.batch import install as install_batch
from dev.local_aws.images import load_image_map
from dev.local_aws.lifecycles import load_lifecycles
from dev.local_aws.quotas_pricing import QuotasPricingMiddleware
from dev.local_aws.training_jobs import EmulatorConfig, install, stop_all
from dev.local_aws.wire import ApiMiddleware

#: Environment variable naming the file where non-conforming responses are recorded
#: (``--check-responses``'s default): the test suite sets it for every emulator it starts.
CHECK_RESPONSES_ENV = "MRT_CHECK_EMULATOR_RESPONSES"


def runners_endpoint(host: str, port: int) -> str:
    """Jobs reach the server on loopback even when it listens on every interface."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"  # noqa: S104


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--images", help="JSON map of training image repository -> local command")
    parser.add_argument("--workdir", default=None, help="where job directories are made (default: a temp dir)")
    parser.add_argument("--max-concurrent-jobs", type=int, default=2)
    parser.add_argument("--max-processes-per-job", type=int, default=2)
    parser.add_argument("--stop-grace-seconds", type=float, default=120.0,
                        help="seconds between SIGTERM and SIGKILL when a job is stopped (SageMaker: 120)")
    parser.add_argument("--capacity-error-region", action="append", default=[],
                        help="fail CreateTrainingJob in this region with ResourceLimitExceeded")
    parser.add_argument("--lifecycles", default=None,
                        help="JSON of spot/capacity/throttling lifecycles per region or job "
                        "(local_aws.lifecycles; default: none)")
    parser.add_argument("--check-responses", default=os.environ.get(CHECK_RESPONSES_ENV) or None,
                        metavar="FILE", help="validate every response against botocore's model; record "
                        f"non-conforming ones in FILE (default: ${CHECK_RESPONSES_ENV}; unset: no check)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # werkzeug's access line per request (each job in flight is described every 2 s)
    # and about 4 % of the emulator's CPU (py-spy, 500 targets); the middleware keeps its
    # own record of the calls, and werkzeug's warnings and errors still print.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mrt-local-aws-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    lifecycles = load_lifecycles(args.lifecycles)
    # ThreadedMotoServer builds its WSGI app inside its thread; its werkzeug server calls
    # whatever ``app`` holds per request, so the middleware goes in before any client.
    assert server._server is not None
    # Service Quotas for SageMaker and the Price List API (local_aws.quotas_pricing) sit
    # inside the middleware, so its throttling and response check cover them too.
    server._server.app = ApiMiddleware(QuotasPricingMiddleware(server._server.app), lifecycles=lifecycles,
                                       violations_path=args.check_responses)
    runners = install(
        EmulatorConfig(
            endpoint_url=runners_endpoint(host, port),
            images=load_image_map(args.images),
            workdir=workdir,
            max_concurrent=args.max_concurrent_jobs,
            max_processes=args.max_processes_per_job,
            capacity_errors=set(args.capacity_error_region),
            stop_grace_seconds=args.stop_grace_seconds,
            lifecycles=lifecycles,
        )
    )
    # AWS Batch for the launchers (local_aws.batch): array children and service jobs.
    batch = BatchEmulator(endpoint_url=runners_endpoint(host, port), workdir=workdir,
                          stop_grace_seconds=args.stop_grace_seconds)
    install_batch(batch)
    print(f"local AWS emulator listening on http://{host}:{port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    batch.stop_all()
    stop_all(runners)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
