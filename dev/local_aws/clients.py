"""boto3 clients against a local emulator: one place for the endpoint and the dummy keys.

:func:`client` makes a new one (tests, seeding); :func:`shared_client` gives the
emulator's own threads one per service, region and endpoint: building a client from
botocore's models per job was about 4 % of the emulator's CPU at 500 targets (py-spy).
"""

from __future__ import annotations

import threading
from typing import Any

_SHARED: dict[tuple[str, str, str], Any] = {}
_SHARED_LOCK = threading.Lock()


def client(service: str, region: str, endpoint_url: str) -> Any:
    """A new boto3 client for ``service`` in ``region`` at the emulator's ``endpoint_url``."""
    import boto3

    return boto3.client(
        service, region_name=region, endpoint_url=endpoint_url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def shared_client(service: str, region: str, endpoint_url: str) -> Any:
    """One client per service, region and endpoint for every caller: boto3's clients are
    thread-safe, making one is not (a lock around it)."""
    key = (service, region, endpoint_url)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = client(service, region, endpoint_url)
        return _SHARED[key]
