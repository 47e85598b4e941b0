"""The CPU time of each step of an event loop running N training-job triggers (issue 33).

The triggerer warns "async thread was blocked" when one step of its loop holds it over
0.2 s (wall time, so also when the machine is busy). This counts CPU instead
(``time.thread_time()`` around every ``asyncio.Handle._run``), which load does not
inflate: N :class:`~regional_training.launch.triggers.StoppingSageMakerTrigger` over four
regions, started ``--stagger`` seconds apart, each polling a real job of the emulator
until it ends, in one process that has imported what the triggerer has. ``--before``
turns off what ``regional_training.runtime.async_clients`` does against blocking (the warm-up
thread: botocore data, one request signed, ``gc.freeze()``; and idle clients kept).

    .venv/bin/python -m bench.trigger_loop_steps --triggers 48 [--before] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import cProfile
import io
import json
import os
import pstats
import time
from typing import Any

from dev.local_stack import DUMMY_CREDENTIALS, aws_client, fake_image_map, local_aws

REGIONS = ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2")
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/multi-region-training/resnet50-horovod:local"


def _instrument(steps: list[tuple[float, str]], profiles: list[cProfile.Profile], profile: bool) -> None:
    original = asyncio.events.Handle._run

    def timed(self: Any) -> None:
        prof = cProfile.Profile() if profile else None
        start = time.thread_time()
        if prof:
            prof.enable()
        original(self)
        if prof:
            prof.disable()
        used = time.thread_time() - start
        if used > 0.02:
            steps.append((used, repr(self._callback)[:100]))
            if prof and used > 0.1:
                profiles.append(prof)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]


async def _follow(names: list[tuple[str, str]], stagger: float) -> list[Any]:
    from regional_training.launch.triggers import StoppingSageMakerTrigger

    async def one(trigger: Any) -> Any:
        async for event in trigger.run():
            return event
        return None

    tasks = []
    for region, name in names:
        trigger = StoppingSageMakerTrigger(job_name=name, job_type="Training", waiter_delay=2,
                                           waiter_max_attempts=120, aws_conn_id="aws_default", region_name=region)
        tasks.append(asyncio.create_task(one(trigger)))
        await asyncio.sleep(stagger)
    return await asyncio.gather(*tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=48)
    parser.add_argument("--stagger", type=float, default=0.15, help="seconds between trigger starts")
    parser.add_argument("--job-seconds", type=float, default=15)
    parser.add_argument("--before", action="store_true", help="without the warm-up and the idle clients")
    parser.add_argument("--profile", action="store_true", help="print a profile of each step over 0.1 s")
    args = parser.parse_args()
    import regional_training.launch.triggers  # noqa: F401 - what the triggerer imports (the rest in a thread)
    from regional_training.runtime import async_clients

    if args.before:
        async_clients.WARMED.update({"sagemaker", "batch"})
        async_clients.POOL.idle_seconds = 0
    steps: list[tuple[float, str]] = []
    profiles: list[cProfile.Profile] = []
    with local_aws(fake_image_map(args.job_seconds), max_concurrent_jobs=args.triggers) as endpoint:
        os.environ.update(DUMMY_CREDENTIALS)
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-west-2"}})
        names = []
        for i in range(args.triggers):
            region, name = REGIONS[i % len(REGIONS)], f"mrt-loop-bench-{os.getpid()}-{i}"
            aws_client("sagemaker", endpoint, region).create_training_job(
                TrainingJobName=name, AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                RoleArn="arn:aws:iam::123456789012:role/mrt-bench", OutputDataConfig={"S3OutputPath": "s3://mrt-bench/x"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
                StoppingCondition={"MaxRuntimeInSeconds": 600})
            names.append((region, name))
        _instrument(steps, profiles, args.profile)
        started = time.perf_counter()
        events = asyncio.run(_follow(names, args.stagger))
        wall = time.perf_counter() - started
    over = {limit: sum(used > limit for used, _ in steps) for limit in (0.05, 0.1, 0.2)}
    print(f"{args.triggers} triggers{' (before)' if args.before else ''}: wall {wall:.1f} s, "
          f"{sum(e is not None for e in events)} events; loop steps over 50/100/200 ms of CPU: "
          f"{over[0.05]}/{over[0.1]}/{over[0.2]}; longest {max((u for u, _ in steps), default=0) * 1000:.0f} ms; "
          f"steps over 20 ms sum to {sum(u for u, _ in steps):.2f} s")
    for prof in profiles:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
