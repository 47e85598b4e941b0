"""How long starting N training-job triggers blocks the triggerer's event loop (issue 12).

The triggerer runs every trigger in one asyncio loop and warns when a step blocks it
("async thread was blocked for ... likely caused by a badly-written trigger"). This
starts ``--triggers`` :class:`~regional_training.launch.triggers.StoppingSageMakerTrigger` at
once against the local emulator (jobs that do not exist: each trigger creates its
client and waiter, polls once and ends), with a ticker measuring how late the loop runs
it, and prints the longest block and the sum of blocks over 50 ms.

    .venv/bin/python -m bench.trigger_startup --triggers 16 --triggers 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from dev.local_stack import DUMMY_CREDENTIALS, fake_image_map, local_aws

REPO = Path(__file__).resolve().parents[1]
TICK = 0.01
BLOCK = 0.05


async def _ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - start - TICK)


async def _one(trigger: object) -> None:
    async for _event in trigger.run():  # type: ignore[attr-defined]
        return


async def _measure(count: int) -> tuple[float, float, float]:
    from regional_training.launch.triggers import StoppingSageMakerTrigger

    triggers = [StoppingSageMakerTrigger(job_name=f"mrt-bench-missing-{i}", job_type="Training", poke_interval=1,
                                         max_attempts=1, aws_conn_id="aws_default", region_name="us-west-2")
                for i in range(count)]
    stop, lags = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, lags))
    start = time.perf_counter()
    await asyncio.gather(*(_one(t) for t in triggers))
    wall = time.perf_counter() - start
    stop.set()
    await ticker
    return wall, max(lags), sum(lag for lag in lags if lag > BLOCK)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, action="append", help="triggers started at once (repeat)")
    args = parser.parse_args()
    with local_aws(fake_image_map(1)) as endpoint:
        os.environ.update(DUMMY_CREDENTIALS)
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-west-2"}})
        for count in args.triggers or [16]:
            wall, worst, blocked = asyncio.run(_measure(count))
            print(f"{count} triggers: wall {wall:.2f} s, longest loop block {worst * 1000:.0f} ms, "
                  f"blocks over {BLOCK * 1000:.0f} ms sum to {blocked:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
