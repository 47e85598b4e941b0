"""Parameter scans: the ``scan`` Param, its points, and how a point changes a job.

A scan lifts parameters into the array file (one line per job): each selected dataset
trains once per *point*, and a point overrides the run's recipe with its own
hyperparameters and, optionally, its own ``image_tag`` and ``entry_point``. Without a
scan there is one point with no overrides: one job per dataset, as before, and every
key, job name and S3 path stays what it was.

The Param is either a grid over named values (the points are the cartesian product, in
the order given) or an explicit list of points::

    {"grid": {"learning_rate": [0.1, 0.2], "batch_size": [32, 64]}}
    {"points": [{"learning_rate": 0.1}, {"learning_rate": 0.2, "image_tag": "v2"}],
     "metric": "validation:loss"}

Points are numbered ``p01``, ``p02``, ... in that order; a job's target key is
``<dataset>_<point>`` (:func:`regional_training.runtime.identifiers.target_key`). Only
hyperparameters that are Params of the recipe can be scanned, each value is checked
against that Param's own schema (an integer Param refuses ``3.0``), and image tags and
entry points must be on the deployment's allow-list (Variable ``mrt_scan_allow_list``;
default: the deployment's own tag and ``train.py``). Every refusal names the point and
the key, in the first task, before anything is launched.

In the array file a point's overrides travel as ``key=value;key=value`` with each value
percent-encoded (no ``,`` ``;`` ``=`` or quote can appear), the text the entry point's
parser reads; :func:`decode` checks every value again when the file is read back.

Results compare per dataset: :func:`rank` orders a dataset's points by the chosen metric
(``metric``; default ``validation:accuracy``, higher is better; a ``loss`` lower).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from regional_training.plan.metric_format import METRIC_KEYS

# The Param's name, keys and schema are params.py's (it owns every Param schema and
# imports no feature module): named here as this module has always named them.
from regional_training.plan.params import (
    HYPERPARAMETER_PARAMS,
    param_specs,
    scannable_keys,
)
from regional_training.plan.params import SCAN_DEFAULT_METRIC as DEFAULT_METRIC
from regional_training.plan.params import SCAN_ENTRY_POINT as ENTRY_POINT
from regional_training.plan.params import SCAN_IMAGE_TAG as IMAGE_TAG
from regional_training.plan.params import SCAN_MAX_POINTS as MAX_POINTS
from regional_training.plan.params import SCAN_PARAM as PARAM_NAME

#: The Variable holding the allow-list: ``{"image_tags": [...], "entry_points": [...]}``.
ALLOW_LIST_VARIABLE = "mrt_scan_allow_list"
#: A tag as ECR accepts it (settings' ``mrt_training_image_tag`` rule).
IMAGE_TAG_PATTERN = r"^[\w][\w.-]{0,127}$"
#: A program file in the image's code directory (no path outside it).
ENTRY_POINT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*\.(py|sh)$"
#: The overrides' separators (a value is percent-encoded, so it never contains them).
PAIR_SEPARATOR = ";"
KEY_SEPARATOR = "="


class ScanError(ValueError):
    """A scan that must not run; the message names the point (or axis) and the key."""


@dataclass(frozen=True)
class AllowList:
    """Image tags and entry points a scan point may use."""

    image_tags: frozenset[str]
    entry_points: frozenset[str]


@dataclass(frozen=True)
class Point:
    """One scan point: its id and its overrides of the recipe (typed as the Params)."""

    point_id: str
    overrides: dict[str, Any]


def _hyperparameter_specs() -> dict[str, dict[str, Any]]:
    specs = param_specs()
    return {name: specs[name] for name in HYPERPARAMETER_PARAMS}


def allow_list_from(raw: str | None, *, default_image_tag: str) -> AllowList:
    """The allow-list from the Variable's JSON text (``None``: the deployment's own tag
    and the default program only)."""
    from regional_training.plan.training_request import ENTRY_POINT as DEFAULT_PROGRAM

    if not raw:
        return AllowList(frozenset({default_image_tag}), frozenset({DEFAULT_PROGRAM}))
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise ScanError(f"Airflow Variable {ALLOW_LIST_VARIABLE!r} is not JSON: {err}") from None
    if not isinstance(data, dict) or set(data) - {"image_tags", "entry_points"}:
        raise ScanError(f"Airflow Variable {ALLOW_LIST_VARIABLE!r} must be an object with 'image_tags' and "
                        "'entry_points' lists")
    tags, programs = data.get("image_tags") or [default_image_tag], data.get("entry_points") or [DEFAULT_PROGRAM]
    for what, values, pattern in (("image_tags", tags, IMAGE_TAG_PATTERN), ("entry_points", programs,
                                                                             ENTRY_POINT_PATTERN)):
        bad = [v for v in values if not isinstance(v, str) or not re.fullmatch(pattern, v)]
        if bad:
            raise ScanError(f"Airflow Variable {ALLOW_LIST_VARIABLE!r}: {what} {bad!r} do not match {pattern}")
    return AllowList(frozenset(tags), frozenset(programs))


def load_allow_list(default_image_tag: str) -> AllowList:
    """Read the allow-list Variable through the Task SDK (call inside a task only)."""
    from airflow.sdk import Variable

    return allow_list_from(Variable.get(ALLOW_LIST_VARIABLE, default=None), default_image_tag=default_image_tag)


def _json_type(spec: Mapping[str, Any]) -> str:
    declared = spec.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    return next(t for t in types if t != "null")


def check_value(label: str, key: str, value: Any, allow: AllowList | None = None) -> Any:
    """``value`` for ``key`` checked against its Param's schema (or the allow-list), in
    the form the request uses (a float Param's value as a float); raises naming it."""
    import jsonschema

    where = f"{label}: key {key!r}"
    if key in (IMAGE_TAG, ENTRY_POINT):
        pattern = IMAGE_TAG_PATTERN if key == IMAGE_TAG else ENTRY_POINT_PATTERN
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ScanError(f"{where} = {value!r} does not match {pattern}")
        allowed = None if allow is None else (allow.image_tags if key == IMAGE_TAG else allow.entry_points)
        if allowed is not None and value not in allowed:
            raise ScanError(f"{where} = {value!r} is not on the allow-list (Variable {ALLOW_LIST_VARIABLE!r}: "
                            f"{', '.join(sorted(allowed))})")
        return value
    specs = _hyperparameter_specs()
    if key not in specs:
        raise ScanError(f"{where} is not a hyperparameter Param of the recipe (scannable: "
                        f"{', '.join(scannable_keys())})")
    spec = specs[key]
    kind = _json_type(spec)
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ScanError(f"{where} = {value!r} is not an integer")
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ScanError(f"{where} = {value!r} is not a finite number")
        value = float(value)
    if kind == "string" and not isinstance(value, str):
        raise ScanError(f"{where} = {value!r} is not a string")
    schema = {k: v for k, v in spec.items() if k not in ("default", "title", "description")}
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        raise ScanError(f"{where} = {value!r} is refused by the Param's schema: {error.message}")
    return value


def points(scan: Mapping[str, Any] | None, *, allow: AllowList | None = None) -> list[Point]:
    """The scan's points, checked (``[]``: no scan, one job per dataset as before)."""
    if not scan:
        return []
    if not isinstance(scan, Mapping):
        raise ScanError(f"param {PARAM_NAME!r}: {scan!r} is not an object")
    unknown = sorted(set(scan) - {"grid", "points", "metric"})
    if unknown:
        raise ScanError(f"param {PARAM_NAME!r}: unknown key(s) {unknown}; expected 'grid' or 'points' (+ 'metric')")
    if ("grid" in scan) == ("points" in scan):
        raise ScanError(f"param {PARAM_NAME!r}: give exactly one of 'grid' and 'points'")
    metric_of(scan)
    raw = _grid_points(scan["grid"], allow) if "grid" in scan else _listed_points(scan["points"], allow)
    width = max(2, len(str(len(raw))))
    out: list[Point] = []
    seen: dict[str, str] = {}
    for index, overrides in enumerate(raw, start=1):
        point = Point(f"p{index:0{width}d}", overrides)
        same = json.dumps(overrides, sort_keys=True)
        if same in seen:
            raise ScanError(f"param {PARAM_NAME!r}: point {point.point_id} repeats point {seen[same]}")
        seen[same] = point.point_id
        out.append(point)
    return out


def _grid_points(grid: Any, allow: AllowList | None) -> list[dict[str, Any]]:
    """The grid's cartesian product, axes in the order given."""
    if not isinstance(grid, Mapping) or not grid:
        raise ScanError(f"param {PARAM_NAME!r}: 'grid' must be an object of non-empty lists")
    axes = []
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ScanError(f"param {PARAM_NAME!r} grid axis {key!r}: must be a non-empty list")
        checked = [check_value(f"param {PARAM_NAME!r} grid axis {key!r} item {i}", key, v, allow)
                   for i, v in enumerate(values, start=1)]
        if len({json.dumps(v) for v in checked}) != len(checked):
            raise ScanError(f"param {PARAM_NAME!r} grid axis {key!r}: a value appears twice")
        axes.append([(key, v) for v in checked])
    raw = [dict(combo) for combo in itertools.product(*axes)]
    if len(raw) > MAX_POINTS:
        raise ScanError(f"param {PARAM_NAME!r}: the grid has {len(raw)} points; at most {MAX_POINTS}")
    return raw


def _listed_points(given: Any, allow: AllowList | None) -> list[dict[str, Any]]:
    if not isinstance(given, list) or not given or len(given) > MAX_POINTS:
        raise ScanError(f"param {PARAM_NAME!r}: 'points' must be a list of 1 to {MAX_POINTS} objects")
    raw = []
    for index, point in enumerate(given, start=1):
        if not isinstance(point, Mapping) or not point:
            raise ScanError(f"param {PARAM_NAME!r} point {index}: must be a non-empty object")
        raw.append({key: check_value(f"param {PARAM_NAME!r} point {index}", key, value, allow)
                    for key, value in point.items()})
    return raw


def metric_of(scan: Mapping[str, Any] | None) -> tuple[str, bool]:
    """The ranking metric and whether higher is better (a loss: lower)."""
    name = (scan or {}).get("metric") or DEFAULT_METRIC
    if name not in METRIC_KEYS:
        raise ScanError(f"param {PARAM_NAME!r}: metric {name!r} is not one of {', '.join(sorted(METRIC_KEYS))}")
    return name, not name.endswith("loss")


# -- the array file's encoding ------------------------------------------------------------


def _text(value: Any) -> str:
    """The text the entry point's parser gets (as ``training_request`` renders it)."""
    from regional_training.plan.training_request import hyperparameter_text

    return hyperparameter_text(value)


def encode(overrides: Mapping[str, Any]) -> str:
    """``key=value;key=value`` in key order, each value percent-encoded."""
    if not overrides:
        raise ScanError("a scan point has no overrides")
    return PAIR_SEPARATOR.join(f"{key}{KEY_SEPARATOR}{quote(_text(overrides[key]), safe='')}"
                               for key in sorted(overrides))


def decode(text: str, *, label: str = "overrides") -> dict[str, Any]:
    """Read :func:`encode`'s text back, every value checked as in the Param."""
    specs = _hyperparameter_specs()
    out: dict[str, Any] = {}
    for pair in text.split(PAIR_SEPARATOR):
        key, sep, encoded = pair.partition(KEY_SEPARATOR)
        if not sep or not key or not encoded:
            raise ScanError(f"{label}: {pair!r} is not key=value")
        if key in out:
            raise ScanError(f"{label}: key {key!r} appears twice")
        value: Any = unquote(encoded)
        if key in specs and _json_type(specs[key]) in ("integer", "number"):
            try:
                value = int(value) if _json_type(specs[key]) == "integer" else float(value)
            except ValueError:
                what = "an integer" if _json_type(specs[key]) == "integer" else "a number"
                raise ScanError(f"{label}: key {key!r} = {value!r} is not {what}") from None
        out[key] = check_value(label, key, value)
    if encode(out) != text:  # one text per point: a re-render gives the same bytes
        raise ScanError(f"{label}: {text!r} is not in canonical form ({encode(out)!r})")
    return out


# -- a point's effect on a job ---------------------------------------------------------


def split_overrides(overrides: Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None, str | None]:
    """``(hyperparameters, image tag, entry point)`` of a point's overrides."""
    values = dict(overrides or {})
    return ({k: v for k, v in values.items() if k not in (IMAGE_TAG, ENTRY_POINT)},
            values.get(IMAGE_TAG), values.get(ENTRY_POINT))


def describe(overrides: Mapping[str, Any] | None) -> str:
    """``learning_rate=0.2 batch_size=64`` for people (summary, report)."""
    return " ".join(f"{k}={_text(v)}" for k, v in sorted((overrides or {}).items())) or "-"


# -- results compared ------------------------------------------------------------------


def rank(rows: Sequence[Mapping[str, Any]], metric: str, higher_is_better: bool) -> dict[str, list[dict[str, Any]]]:
    """Per dataset (its target key without the point), the scan's rows ranked by
    ``metric``: rows with the metric first, best first; ties by cost, then point id.
    Each entry: ``point_id``, ``target_key``, ``region``, ``status``, ``value``,
    ``images_per_sec``, ``actual_cost_usd``, ``overrides``, ``rank`` (1 = best; ``None``
    without the metric), ``best``, ``model_artifact_uri``."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        point = row.get("point_id")
        if not point:
            continue
        dataset = dataset_of(str(row["target_key"]), point)
        grouped.setdefault(dataset, []).append(row)
    out: dict[str, list[dict[str, Any]]] = {}
    for dataset, group in sorted(grouped.items()):
        def key(row: Mapping[str, Any]) -> tuple[Any, ...]:
            value = (row.get("metrics") or {}).get(metric)
            sign = -1 if higher_is_better else 1
            if value is None or row.get("status") not in ("Completed", "Reused"):
                return (True, 0.0, 0.0, row["point_id"])
            return (False, sign * float(value), row.get("actual_cost_usd") or 0.0, row["point_id"])

        entries = []
        for position, row in enumerate(sorted(group, key=key), start=1):
            metrics = row.get("metrics") or {}
            usable = metrics.get(metric) is not None and row.get("status") in ("Completed", "Reused")
            entries.append({
                "point_id": row["point_id"], "target_key": row["target_key"], "region": row.get("region_code"),
                "status": row.get("status"), "value": metrics.get(metric) if usable else None,
                "images_per_sec": metrics.get("train:images_per_sec"),
                "actual_cost_usd": row.get("actual_cost_usd"), "overrides": dict(row.get("point_overrides") or {}),
                "rank": position if usable else None, "best": usable and position == 1,
                "model_artifact_uri": row.get("model_artifact_uri"),
            })
        out[dataset] = entries
    return out


#: The scan columns of ``upsert_training_run.sql`` for a row written without a job
#: (tests, tools): no point, program unknown.
NO_POINT: dict[str, Any] = {"point_id": None, "point_overrides": None, "entry_point": None}


def row_fields(point_id: str | None, overrides: Mapping[str, Any] | None, request: Mapping[str, Any] | None
               ) -> dict[str, Any]:
    """A ``training_runs`` row's scan columns: the point, its overrides and the program
    the request runs (``sagemaker_program``)."""
    program = ((request or {}).get("HyperParameters") or {}).get("sagemaker_program")
    return {"point_id": point_id, "point_overrides": dict(overrides) if point_id and overrides else None,
            "entry_point": program}


def overrides_json(overrides: Mapping[str, Any] | None) -> str | None:
    """``point_overrides`` as the upsert binds it (jsonb)."""
    return None if overrides is None else json.dumps(dict(overrides), sort_keys=True)


def best_uri(layout: Any, dataset: str) -> str:
    """The stable pointer to a dataset's best model of the run, in the central bucket:
    ``runs/<run>/best/<dataset>/model.tar.gz`` (``layout``: the run's ``RunLayout``)."""
    return str(layout.uri(f"best/{dataset}/model.tar.gz"))


def publish_best(ranking: Mapping[str, Any] | None, *, layout: Any, copy: Any) -> dict[str, str]:
    """Copy each dataset's best model (server-side, within the central bucket) to its
    :func:`best_uri`, and note the pointer in the ranking; ``{dataset: pointer}``. A
    re-run copies the same object over it (idempotent)."""
    published: dict[str, str] = {}
    for dataset, best in ((ranking or {}).get("best") or {}).items():
        source = best.get("model_artifact_uri")
        if not source:
            continue
        pointer = best_uri(layout, dataset)
        copy(source, pointer)
        best["best_model_uri"] = pointer
        for entry in ranking["datasets"][dataset]:  # type: ignore[index]
            if entry["best"]:
                entry["best_model_uri"] = pointer
        published[dataset] = pointer
    return published


def dataset_of(target_key: str, point_id: str | None) -> str:
    """The target key without its point (the dataset's key in the run)."""
    return target_key[: -len(point_id) - 1] if point_id else target_key
