"""Params: the trigger form's schema, and every invalid value refused with its name."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regional_training.plan.params import SECTIONS, param_specs, processes_per_host, training_hyperparameters
from regional_training.plan.targets import TargetError, validate_rows


def _params_dict(conf: dict[str, Any]):
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict({name: Param(**spec) for name, spec in param_specs().items()})
    params.update(conf)  # what Airflow does with a triggered run's conf
    return params


def test_defaults_validate_and_every_param_explains_itself() -> None:
    resolved = _params_dict({}).validate()
    assert resolved["instance_type"] == "ml.p4d.24xlarge" and resolved["dry_run"] is False
    for name, spec in param_specs().items():
        assert spec.get("title"), name
        assert len(spec.get("description") or "") >= 20, f"param {name!r} has no help text"


def test_every_param_is_placed_in_one_of_the_forms_sections_in_order() -> None:
    specs = param_specs()
    # Each Param listed in exactly one section on purpose (none falls back unnoticed).
    listed = [name for names in SECTIONS.values() for name in names]
    assert len(listed) == len(set(listed))
    assert set(specs) <= set(listed), sorted(set(specs) - set(listed))
    assert list(SECTIONS) == ["What to train", "Training", "Placement and cost", "Launcher", "Scans", "Advanced"]
    assert all(spec["section"] in SECTIONS for spec in specs.values())
    # The form opens one accordion per section in the order it meets them: grouped, in order.
    sections = [spec["section"] for spec in specs.values()]
    assert sections == sorted(sections, key=list(SECTIONS).index)
    assert {s: [n for n, spec in specs.items() if spec["section"] == s] for s in SECTIONS} == {
        s: [n for n in names if n in specs] for s, names in SECTIONS.items()}
    assert specs["scan"]["section"] == "Scans" and specs["array_file"]["section"] == "What to train"


# One invalid value per Param (outside type, bounds, enum or pattern).
INVALID = {
    "array_file": st.sampled_from([7, ["us-east-1,s3://b/d/"], {"text": "x"}, "x" * 1_000_001]),
    "campaigns": st.sampled_from([["Bad Key"], "boston", [1], ["a", "a"]]),
    "regions": st.sampled_from([["us-east"], "us-east-1", [""], ["eu-west-1", "eu-west-1"]]),
    "instance_type": st.sampled_from(["ml.t3.medium", "", 8]),
    "instance_count": st.one_of(st.integers(max_value=0), st.integers(min_value=17), st.just("2")),
    "processes_per_host": st.one_of(st.integers(max_value=0), st.integers(min_value=9)),
    "model": st.sampled_from(["vgg16", ""]),
    "num_classes": st.one_of(st.integers(max_value=1), st.integers(min_value=100001)),
    "epochs": st.one_of(st.integers(max_value=0), st.integers(min_value=201), st.floats(0.1, 0.9)),
    "max_steps": st.one_of(st.integers(max_value=0), st.just("10")),
    "batch_size": st.one_of(st.integers(max_value=0), st.integers(min_value=1025)),
    "learning_rate": st.one_of(st.floats(max_value=0, allow_nan=False), st.floats(min_value=10.001,
                                                                                  allow_infinity=False)),
    "lr_schedule": st.sampled_from(["linear", "POLY"]),
    "warmup_epochs": st.one_of(st.integers(max_value=-1), st.integers(min_value=51)),
    "image_size": st.one_of(st.integers(max_value=15), st.integers(min_value=513)),
    "log_every": st.integers(max_value=0),
    "max_runtime_hours": st.one_of(st.integers(max_value=0), st.integers(min_value=121)),
    "volume_size_gb": st.one_of(st.integers(max_value=0), st.integers(min_value=16385)),
    "placement": st.sampled_from(["random", ""]),
    "estimated_hours": st.one_of(st.floats(max_value=0, allow_nan=False), st.floats(min_value=720.01,
                                                                                    allow_infinity=False)),
    "budget_usd": st.one_of(st.floats(max_value=-0.01, allow_nan=False), st.just("100")),
    "budget_hard_cap_usd": st.one_of(st.floats(max_value=-0.01, allow_nan=False), st.just("100")),
    "purchase_options": st.sampled_from([["free"], "spot", ["spot", "spot"]]),
    "count_instances_in_use": st.sampled_from(["yes", 1, None]),
    "learn_from_failures": st.sampled_from(["no", 0, None]),
    "carry_checkpoints": st.sampled_from(["no", 0, None]),
    "max_failovers": st.one_of(st.integers(max_value=-1), st.integers(min_value=6)),
    "spot_extra_wait_hours": st.one_of(st.integers(max_value=0), st.integers(min_value=169)),
    "dry_run": st.sampled_from(["yes", 1, None]),
    "launcher": st.sampled_from(["batch", "", "AIRFLOW"]),
    "batch_capacity_wait_minutes": st.one_of(st.integers(max_value=-1), st.integers(min_value=10081)),
    "batch_scheduling_priority": st.one_of(st.integers(max_value=-1), st.integers(min_value=10000)),
    "batch_share_identifier": st.sampled_from(["", "team a", "x" * 256]),
    "reuse_completed_within": st.sampled_from(["P1Y", "P1M", "7 days", "PT", 7]),
    "scan": st.sampled_from(["grid", {"grid": {"instance_count": [1]}}, {"points": []}, {"sweep": {}},
                             {"grid": {"learning_rate": []}}, {"points": [{}]}, {"grid": {}, "metric": "f1"}]),
}


def test_every_param_has_an_invalid_case() -> None:
    assert set(INVALID) == set(param_specs())


@given(st.sampled_from(sorted(INVALID)).flatmap(lambda name: st.tuples(st.just(name), INVALID[name])))
def test_a_conf_outside_the_schema_is_refused_naming_the_param(case: tuple[str, Any]) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    name, value = case
    with pytest.raises(ParamValidationError, match=name):
        _params_dict({name: value}).validate()


def test_processes_per_host_cannot_exceed_the_gpus() -> None:
    with pytest.raises(ValueError, match=r"param 'processes_per_host' = 8 exceeds the 4 GPUs of ml\.g5\.12xlarge"):
        processes_per_host({"instance_type": "ml.g5.12xlarge", "processes_per_host": 8})
    assert processes_per_host({"instance_type": "ml.p4d.24xlarge", "processes_per_host": None}) == 8


def test_hyperparameters_leave_out_unset_values() -> None:
    hps = training_hyperparameters({**{n: s["default"] for n, s in param_specs().items()}})
    assert "max_steps" not in hps and hps["epochs"] == 90 and "dry_run" not in hps


ROW = {"region_code": "eu-west-1", "s3_uri": "s3://data-eu/datasets/c/d/", "campaign_key": "c", "dataset_key": "d",
       "dataset_id": 1, "copy_id": 1, "output_bucket": "out-eu"}
BAD_VALUES = {
    "region_code": st.sampled_from(["EU-WEST-1", "eu-west", "", "eu-west-1,x", None]),
    "s3_uri": st.one_of(st.sampled_from(["http://x/y/", "s3://x", "", None]),
                        st.text(min_size=1).map(lambda t: f"s3://data-eu/{t},{t}/")),
    "campaign_key": st.sampled_from(["", "Has Space", "a,b", None, "x" * 60]),
    "dataset_key": st.sampled_from(["", "UPPER", "a\nb", None]),
    "output_bucket": st.sampled_from(["", "Out_Bucket", "a", None, "b,c"]),
}


@given(st.sampled_from(sorted(BAD_VALUES)).flatmap(lambda f: st.tuples(st.just(f), BAD_VALUES[f])),
       st.integers(min_value=0, max_value=3))
# The regex strategies are slow to draw on a busy 2-core machine: not a failure of the code.
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_a_bad_metadata_row_is_refused_naming_row_and_field(case: tuple[str, Any], position: int) -> None:
    field, value = case
    rows = [{**ROW, "dataset_key": f"d{i}", "s3_uri": f"s3://data-eu/datasets/c/d{i}/"} for i in range(4)]
    rows[position] = {**rows[position], field: value}
    with pytest.raises(TargetError, match=rf"target row {position + 1} .*field '{field}'"):
        validate_rows(rows, requested_campaigns=[], allowed_regions=[], known_regions={"eu-west-1"})


def test_docs_params_lists_every_param_in_its_section() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "params.md").read_text()
    documented: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            documented[section] = []
        elif section and (match := re.match(r"\| `(\w+)` \|", line)):
            documented[section].append(match.group(1))
    specs = param_specs()
    assert documented == {title: [n for n in names if n in specs] for title, names in SECTIONS.items()}
