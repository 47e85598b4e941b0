"""Tell Airflow a dataset is ready: one ``mrt_dataset_ready`` asset event via the REST API.

For the labelling side, once a dataset's copies are synced and its campaign is
``ready`` in the campaign DB::

    export MRT_AIRFLOW_API_TOKEN=...   # a bearer token from the deployment's auth manager
    python -m regional_training.cli.emit_ready --api-url https://airflow.example.com \\
        --campaign dublin-urban-2026 --dataset dublin-urban-2026-v1

It looks the asset up by name (``GET /api/v2/assets``; the asset exists once the
training DAG, scheduled on it, has been parsed) and posts ``POST /api/v2/assets/events``
with ``extra = {"campaign_key": ..., "dataset_key": ...}`` (Airflow adds
``from_rest_api``). The training DAG then runs for exactly the datasets named by the
events queued since its last run (:func:`regional_training.run.assets.dataset_selection`).
The caller needs the auth manager's ``POST`` permission on assets. The token comes from
the environment only (``--token-env`` names the variable), never from the command line,
where ``ps`` would show it. Prints the created event as JSON; exit status 1 with the
API's answer on any refusal.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Only the standard library and identifiers: the labelling side needs no Airflow installed.
# The dataset-ready asset's name and URI (regional_training.run.assets.DATASET_READY is built
# from them) are identifiers', so that the DAG's parse need not import this module.
from regional_training.runtime import identifiers
from regional_training.runtime.identifiers import READY_ASSET_NAME as READY_ASSET_NAME
from regional_training.runtime.identifiers import READY_ASSET_URI as READY_ASSET_URI


class ReadyEventError(ValueError):
    """A ready event whose ``extra`` is unusable (names the event and the field)."""


@dataclass(frozen=True, order=True)
class ReadyDataset:
    """One dataset named by a ``mrt_dataset_ready`` event."""

    campaign_key: str
    dataset_key: str

    def extra(self) -> dict[str, str]:
        return {"campaign_key": self.campaign_key, "dataset_key": self.dataset_key}


def ready_dataset(extra: Mapping[str, Any], *, where: str = "event") -> ReadyDataset:
    """The dataset an event's ``extra`` names; a missing or malformed key is a named error."""
    values = {}
    for field in ("campaign_key", "dataset_key"):
        value = extra.get(field)
        if not isinstance(value, str) or not re.fullmatch(identifiers.KEY_PATTERN, value):
            raise ReadyEventError(
                f"{where} of asset {READY_ASSET_NAME!r}: extra[{field!r}] = {value!r} is not a key "
                f"matching {identifiers.KEY_PATTERN}"
            )
        values[field] = value
    return ReadyDataset(**values)


TOKEN_ENV = "MRT_AIRFLOW_API_TOKEN"  # noqa: S105 - the variable's name, not a token


class EmitError(RuntimeError):
    """The API refused or could not be reached (the message has the call and the answer)."""


def _call(method: str, url: str, token: str, body: Any = None, timeout: float = 30) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise EmitError(f"--api-url must be http(s)://, got {url!r}")
    request = urllib.request.Request(url, method=method, data=data, headers=headers)  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        raise EmitError(f"{method} {url} -> HTTP {err.code}: {err.read().decode(errors='replace')[:2000]}") from err
    except urllib.error.URLError as err:
        raise EmitError(f"{method} {url}: {err.reason}") from err


def asset_id(api_url: str, token: str) -> int:
    """The id of the dataset-ready asset in this deployment (exact name and URI match)."""
    query = urllib.parse.urlencode({"name_pattern": READY_ASSET_NAME, "limit": 100})
    body = _call("GET", f"{api_url}/api/v2/assets?{query}", token)
    for asset in body.get("assets", []):
        if asset["name"] == READY_ASSET_NAME and asset["uri"] == READY_ASSET_URI:
            return int(asset["id"])
    raise EmitError(
        f"asset {READY_ASSET_NAME!r} ({READY_ASSET_URI}) is not known to {api_url}: has the training DAG, "
        "which is scheduled on it, been parsed?"
    )


def emit(api_url: str, token: str, dataset: ReadyDataset) -> dict[str, Any]:
    """Post one event; the created event as the API returns it."""
    api_url = api_url.rstrip("/")
    body = {"asset_id": asset_id(api_url, token), "extra": dataset.extra()}
    return dict(_call("POST", f"{api_url}/api/v2/assets/events", token, body))


def main(argv: list[str] | None = None) -> int:
    import argparse  # the command line only: the DAG's parse imports this module (assets)

    parser = argparse.ArgumentParser(
        prog="python -m regional_training.cli.emit_ready", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--campaign", required=True, help="campaign key (campaigns.campaign_key)")
    parser.add_argument("--dataset", required=True, help="dataset key (datasets.dataset_key)")
    parser.add_argument("--api-url", required=True, help="Airflow's base URL, e.g. https://airflow.example.com")
    parser.add_argument("--token-env", default=TOKEN_ENV, help="environment variable holding the bearer token")
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env)
    if not token:
        parser.error(f"environment variable {args.token_env} (the API bearer token) is not set")
    try:
        dataset = ready_dataset({"campaign_key": args.campaign, "dataset_key": args.dataset},
                                where="--campaign/--dataset")
        event = emit(args.api_url, token, dataset)
    except (ReadyEventError, EmitError) as err:
        print(f"emit_ready: {err}", file=sys.stderr)
        return 1
    print(json.dumps(event, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
