"""Parameter scans: the Param's points, target keys with a point, the array file's
overrides (round trip, checked on parse) and each job's request built from its line."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regional_training.launch.jobs import build_jobs
from regional_training.plan import array_file, scan
from regional_training.plan import training_request as tr
from regional_training.plan.params import param_specs
from regional_training.plan.targets import Target, TargetError, target_key_of
from regional_training.runtime import identifiers
from regional_training.runtime.settings import settings_from_mapping

SETTINGS = settings_from_mapping({
    "mrt_aws_account_id": "123456789012",
    "mrt_sagemaker_role_arn": "arn:aws:iam::123456789012:role/mrt-sagemaker-execution",
    "mrt_training_image_repository": "multi-region-training/resnet50-horovod",
    "mrt_training_image_tag": "2026.11.1",
    "mrt_central_bucket": "mrt-central-artifacts",
    "mrt_central_region": "us-east-1",
})
ALLOW = scan.AllowList(frozenset({"2026.11.1", "2026.12.0-rc1"}), frozenset({"train.py", "train_v2.py"}))


def target(region: str = "us-east-1", point: str | None = None, overrides: dict[str, Any] | None = None,
           copy_id: int = 2) -> Target:
    return Target(region, f"s3://mrt-campaign-data-{region}/datasets/c/d-v1/", "c", "d-v1", 1, copy_id,
                  f"mrt-output-{region}", point_id=point, point_overrides=overrides)


# -- the Param ---------------------------------------------------------------------------


def test_a_grid_is_the_product_in_the_order_given() -> None:
    points = scan.points({"grid": {"learning_rate": [0.1, 0.2], "batch_size": [32, 64]}})
    assert [(p.point_id, p.overrides) for p in points] == [
        ("p01", {"learning_rate": 0.1, "batch_size": 32}), ("p02", {"learning_rate": 0.1, "batch_size": 64}),
        ("p03", {"learning_rate": 0.2, "batch_size": 32}), ("p04", {"learning_rate": 0.2, "batch_size": 64}),
    ]


def test_no_scan_is_no_points() -> None:
    assert scan.points(None) == [] and scan.points({}) == []


def test_listed_points_with_image_and_entry_point_on_the_allow_list() -> None:
    points = scan.points({"points": [{"learning_rate": 1},
                                     {"image_tag": "2026.12.0-rc1", "entry_point": "train_v2.py"}]}, allow=ALLOW)
    # a number Param's value is a float, as the request renders it ("1.0")
    assert points[0].overrides == {"learning_rate": 1.0} and isinstance(points[0].overrides["learning_rate"], float)
    assert points[1].point_id == "p02" and points[1].overrides["image_tag"] == "2026.12.0-rc1"


@pytest.mark.parametrize(("value", "message"), [
    ({"points": [{"learning_rate": 0.1}, {"epochs": 3.0}]}, r"point 2: key 'epochs' = 3\.0 is not an integer"),
    ({"points": [{"batch_size": 4096}]}, r"point 1: key 'batch_size' = 4096 is refused by the Param's schema"),
    ({"points": [{"model": "vgg16"}]}, r"point 1: key 'model' = 'vgg16' is refused"),
    ({"points": [{"instance_count": 2}]}, r"point 1: key 'instance_count' is not a hyperparameter Param"),
    ({"points": [{"image_tag": "latest"}]}, r"point 1: key 'image_tag' = 'latest' is not on the allow-list"),
    ({"points": [{"entry_point": "evil.py"}]}, r"point 1: key 'entry_point' = 'evil.py' is not on the allow-list"),
    ({"points": [{"entry_point": "../x.py"}]}, r"point 1: key 'entry_point' = '\.\./x\.py' does not match"),
    ({"grid": {"learning_rate": [0.1, -1]}}, r"grid axis 'learning_rate' item 2: key 'learning_rate' = -1\.0"),
    ({"grid": {"epochs": [1, 1]}}, r"grid axis 'epochs': a value appears twice"),
    ({"points": [{"epochs": 1}, {"epochs": 1}]}, r"point p02 repeats point p01"),
    ({"grid": {"epochs": [1]}, "points": [{"epochs": 1}]}, r"exactly one of 'grid' and 'points'"),
    ({"grid": {"epochs": [1]}, "metric": "f1"}, r"metric 'f1'"),
    ({"grid": {"epochs": list(range(1, 21)), "batch_size": list(range(1, 21))}}, r"400 points; at most 256"),
])
def test_refused_values_name_the_point_and_the_key(value: dict[str, Any], message: str) -> None:
    with pytest.raises(scan.ScanError, match=message):
        scan.points(value, allow=ALLOW)


def test_the_param_schema_refuses_keys_that_cannot_be_scanned() -> None:
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    spec = param_specs()["scan"]
    assert Param(**spec).resolve({"grid": {"learning_rate": [0.1]}}) == {"grid": {"learning_rate": [0.1]}}
    with pytest.raises(ParamValidationError):
        Param(**spec).resolve({"grid": {"volume_size_gb": [1]}})


def test_the_allow_list_defaults_to_the_deployment_image_and_program() -> None:
    allow = scan.allow_list_from(None, default_image_tag="2026.11.1")
    assert allow == scan.AllowList(frozenset({"2026.11.1"}), frozenset({"train.py"}))
    allow = scan.allow_list_from('{"image_tags": ["a", "b"]}', default_image_tag="x")
    assert allow.image_tags == {"a", "b"} and allow.entry_points == {"train.py"}
    with pytest.raises(scan.ScanError, match="mrt_scan_allow_list"):
        scan.allow_list_from('{"image_tags": ["bad tag"]}', default_image_tag="x")


def test_metric_direction() -> None:
    assert scan.metric_of(None) == ("validation:accuracy", True)
    assert scan.metric_of({"metric": "validation:loss"}) == ("validation:loss", False)


# -- target keys, job names --------------------------------------------------------------


def test_a_point_is_part_of_the_target_key() -> None:
    assert identifiers.target_key("d-v1", None, "p03") == "d-v1_p03"
    assert identifiers.target_key("d-v1", "boston", "p03") == "boston.d-v1_p03"
    assert identifiers.target_key("d-v1") == "d-v1"  # no scan: unchanged
    for key in ("d-v1_p03", "boston.d-v1_p1000", "d-v1"):
        assert identifiers.is_target_key(key) and identifiers.is_tag_value(key)
    for key in ("d-v1_p3", "d-v1_x03", "d-v1_p03_p04", "_p03"):
        assert not identifiers.is_target_key(key)
    assert target(point="p03").target_key == "d-v1_p03" == target_key_of(target(point="p03").to_dict())
    assert target().target_key == "d-v1"


def test_job_names_unique_per_point_and_name_it() -> None:
    hps = tr.sagemaker_hyperparameters({"epochs": 1}, processes_per_host=1)
    names = {tr.job_name("multi_region_training", "manual__x", target(point=p)) for p in (None, "p01", "p02")}
    assert len(names) == 3
    name = tr.job_name("multi_region_training", "manual__x", target(point="p01"))
    assert name.startswith("mrt-us-east-1-d-v1-p01-") and identifiers.is_job_name(name)
    long = Target("ap-southeast-2", "s3://b-x/d/", "c", "d" * 48, 1, 2, "out-x", point_id="p1000")
    assert tr.job_name("d", "r", long).split("-")[-2] == "p1000"
    request = tr.build_request(target=target(point="p01"), settings=SETTINGS, hyperparameters=hps, dag_id="d",
                               run_id="r", instance_type="ml.p4d.24xlarge", instance_count=1, volume_size_gb=1,
                               max_runtime_seconds=3600, image_tag="2026.12.0-rc1")
    tr.validate_request(request)
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("/multi-region-training/resnet50-horovod:"
                                                                       "2026.12.0-rc1")
    assert {"Key": "scan_point", "Value": "p01"} in request["Tags"]


# -- the array file ----------------------------------------------------------------------

HYPER = {
    "learning_rate": st.floats(min_value=1e-6, max_value=10, allow_nan=False, exclude_min=True),
    "batch_size": st.integers(1, 1024),
    "epochs": st.integers(1, 200),
    "model": st.sampled_from(["resnet50", "resnet_tiny"]),
    "lr_schedule": st.sampled_from(["poly", "cosine", "steps"]),
    "warmup_epochs": st.integers(0, 50),
    "image_tag": st.from_regex(r"[\w][\w.-]{0,20}", fullmatch=True),
    "entry_point": st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,8}(/[a-z_]{1,5})?\.(py|sh)", fullmatch=True),
}


@st.composite
def scan_targets(draw: st.DrawFn) -> list[Target]:
    regions = draw(st.lists(st.sampled_from(["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]), min_size=1,
                            max_size=4, unique=True))
    n_points = draw(st.integers(1, 12))
    out = []
    for index in range(1, n_points + 1):
        keys = draw(st.lists(st.sampled_from(sorted(HYPER)), min_size=1, max_size=4, unique=True))
        overrides = {k: draw(HYPER[k]) for k in keys}
        overrides = {k: float(v) if k == "learning_rate" else v for k, v in overrides.items()}
        out.append(target(draw(st.sampled_from(regions)), f"p{index:02d}", overrides, copy_id=index))
    return out


@given(scan_targets())
def test_array_file_round_trip_with_overrides(targets: list[Target]) -> None:
    text = array_file.render(targets)
    assert '"' not in text and text.count(",") == 6 * len(targets)
    rows = array_file.parse(text)
    by_key = {t.target_key: t for t in targets}
    assert len(rows) == len(targets)
    for row in rows:
        t = by_key[row["target_key"]]
        assert (row["region"], row["s3_uri"], row["point_id"]) == (t.region_code, t.s3_uri, t.point_id)
        assert array_file.overrides_of(row) == t.point_overrides
    assert array_file.render(targets) == text  # byte-identical on a re-run


def test_a_line_without_a_scan_is_unchanged() -> None:
    text = array_file.render([target()])
    assert text == "us-east-1,s3://mrt-campaign-data-us-east-1/datasets/c/d-v1/,d-v1,c,mrt-output-us-east-1\n"
    assert set(array_file.parse(text)[0]) == set(array_file.FIELDS)


def test_values_that_would_break_the_line_are_escaped() -> None:
    t = target(point="p01", overrides={"model": "resnet50", "learning_rate": 0.1})
    line = array_file.render([t])
    assert line.rstrip("\n").split(",")[-1] == "learning_rate=0.1;model=resnet50"


@pytest.mark.parametrize(("overrides", "message"), [
    ("epochs=3.5", r"array line 1 \(point p01\): key 'epochs' = '3.5' is not an integer"),
    ("epochs=0", r"array line 1 \(point p01\): key 'epochs' = 0 is refused"),
    ("volume_size_gb=1", r"array line 1 \(point p01\): key 'volume_size_gb' is not a hyperparameter"),
    ("epochs", r"array line 1 \(point p01\): 'epochs' is not key=value"),
    ("learning_rate=.1", r"not in canonical form"),
])
def test_parse_checks_every_override(overrides: str, message: str) -> None:
    line = f"us-east-1,s3://b-us/d/,d-v1_p01,c,out-us,p01,{overrides}\n"
    with pytest.raises(TargetError, match=message):
        array_file.parse(line)


def test_parse_refuses_a_point_that_is_not_the_target_keys() -> None:
    with pytest.raises(TargetError, match="'point_id' = 'p02' is not the point of target 'd-v1_p01'"):
        array_file.parse("us-east-1,s3://b-us/d/,d-v1_p01,c,out-us,p02,epochs=1\n")


# -- each job's request: the recipe plus its line's overrides ------------------------------

PARAMS = {"instance_type": "ml.p4d.24xlarge", "instance_count": 1, "volume_size_gb": 1, "max_runtime_hours": 1,
          "spot_extra_wait_hours": 1, "max_failovers": 1, "model": "resnet50", "epochs": 5, "batch_size": 256,
          "learning_rate": 0.1, "processes_per_host": None}


def test_each_job_gets_its_points_hyperparameters_image_and_program() -> None:
    points = scan.points({"points": [{"learning_rate": 0.2, "batch_size": 32},
                                     {"image_tag": "2026.12.0-rc1", "entry_point": "train_v2.py"}]}, allow=ALLOW)
    targets = [target("us-east-1", p.point_id, p.overrides, copy_id=i) for i, p in enumerate(points, start=1)]
    dicts = [{**t.to_dict(), "alternatives": [target("eu-west-1", t.point_id, t.point_overrides).to_dict()]}
             for t in targets]
    jobs = build_jobs(array_text=array_file.render(targets), targets=dicts, params=PARAMS, settings=SETTINGS,
                      dag_id="multi_region_training", run_id="manual__1")
    first, second = sorted(jobs, key=lambda j: j["point_id"])
    hps = first["request"]["HyperParameters"]
    assert (hps["learning_rate"], hps["batch_size"], hps["epochs"]) == ("0.2", "32", "5")
    assert first["failover"][0]["request"]["HyperParameters"] == hps  # a failover trains the same point
    assert second["request"]["HyperParameters"]["learning_rate"] == "0.1"
    assert second["request"]["HyperParameters"]["sagemaker_program"] == "train_v2.py" == second["entry_point"]
    assert second["request"]["AlgorithmSpecification"]["TrainingImage"].endswith(":2026.12.0-rc1")
    assert second["training_image"] == "multi-region-training/resnet50-horovod:2026.12.0-rc1"
    assert first["training_image"] == "multi-region-training/resnet50-horovod:2026.11.1"
    assert first["hyperparameters_sha256"] != second["hyperparameters_sha256"]
    assert first["hyperparameters_sha256"] == tr.hyperparameters_sha256(hps)
    assert first["point_overrides"] == {"learning_rate": 0.2, "batch_size": 32}


def test_a_line_whose_overrides_differ_from_the_selection_is_refused() -> None:
    t = target(point="p01", overrides={"epochs": 2})
    other = target(point="p01", overrides={"epochs": 3})
    with pytest.raises(ValueError, match="overrides differ"):
        build_jobs(array_text=array_file.render([other]), targets=[{**t.to_dict(), "alternatives": []}],
                   params=PARAMS, settings=SETTINGS, dag_id="d", run_id="r")


# -- results compared ----------------------------------------------------------------------


def _row(point: str, acc: float | None, status: str = "Completed", cost: float = 1.0) -> dict[str, Any]:
    return {"target_key": f"d-v1_{point}", "point_id": point, "region_code": "us-east-1", "status": status,
            "metrics": {} if acc is None else {"validation:accuracy": acc, "train:images_per_sec": 10.0},
            "actual_cost_usd": cost, "point_overrides": {"epochs": 1}, "model_artifact_uri": f"s3://b/{point}"}


def test_rank_orders_points_per_dataset_and_marks_the_best() -> None:
    ranked = scan.rank([_row("p01", 0.5), _row("p02", 0.7), _row("p03", None, "Failed"), _row("p04", 0.7, cost=0.5),
                        {**_row("p01", 0.1), "target_key": "e_p01"}], "validation:accuracy", True)
    assert [e["point_id"] for e in ranked["d-v1"]] == ["p04", "p02", "p01", "p03"]
    assert [e["rank"] for e in ranked["d-v1"]] == [1, 2, 3, None]
    assert [e["best"] for e in ranked["d-v1"]] == [True, False, False, False]
    assert ranked["e"][0]["best"]
    lowest = scan.rank([_row("p01", 0.5), _row("p02", 0.7)], "validation:accuracy", False)
    assert lowest["d-v1"][0]["point_id"] == "p01"


def _scan_rows() -> list[dict[str, Any]]:
    rows = []
    for i, (point, acc, status) in enumerate([("p01", 0.41, "Completed"), ("p02", 0.62, "Completed"),
                                              ("p03", None, "Failed"), ("p04", 0.55, "Completed")]):
        rows.append({**_row(point, acc, status, cost=1.0 + i), "region_code": ["us-east-1", "eu-west-1"][i % 2],
                     "failure_reason": "AlgorithmError" if status == "Failed" else None,
                     "point_overrides": {"learning_rate": 0.1 * (i + 1)},
                     "model_artifact_uri": None if status == "Failed" else f"s3://central/runs/r/artifacts/d-v1_{point}/"
                                                                             "model.tar.gz"})
    return rows


def test_the_summary_ranks_the_points_and_names_the_best() -> None:
    from regional_training.report.report import render_report
    from regional_training.report.summary import summarize
    from regional_training.run.run_layout import RunLayout

    result = summarize(_scan_rows(), run_id="manual__1", planned=4)
    ranking = result["scan"]
    assert ranking["metric"] == "validation:accuracy" and ranking["higher_is_better"]
    assert [e["point_id"] for e in ranking["datasets"]["d-v1"]] == ["p02", "p04", "p01", "p03"]
    assert ranking["best"]["d-v1"]["point_id"] == "p02"
    assert "BEST d-v1: p02 (learning_rate=0.2), validation:accuracy 0.6200" in result["text"]
    assert result["failed"][0]["target"] == "d-v1_p03"  # a failed point is named with its point
    copies: list[tuple[str, str]] = []
    layout = RunLayout("central", "multi_region_training", "manual__1")
    published = scan.publish_best(ranking, layout=layout, copy=lambda s, d: copies.append((s, d)))
    assert published == {"d-v1": layout.uri("best/d-v1/model.tar.gz")}
    assert copies == [("s3://central/runs/r/artifacts/d-v1_p02/model.tar.gz", published["d-v1"])]
    page = render_report(result)
    assert 'id="scan"' in page and 'class="best"' in page and "best/d-v1/model.tar.gz" in page
    plan = render_report({"run_id": "r", "dry_run": True}, plan=[{**target(point="p02").to_dict(), "alternatives": []}])
    assert 'data-target="d-v1_p02"' in plan  # a dry run's plan names each job's point
    lowest = summarize(_scan_rows(), run_id="manual__1", planned=4, metric=("validation:accuracy", False))
    assert lowest["scan"]["best"]["d-v1"]["point_id"] == "p01"


def test_no_scan_no_ranking() -> None:
    from regional_training.report.summary import summarize

    rows = [{**_row("p01", 0.5), "point_id": None, "target_key": "d-v1", "failure_reason": None}]
    assert "scan" not in summarize(rows, run_id="r") and "SCAN" not in summarize(rows, run_id="r")["text"]


def test_the_verdict_names_a_failed_point() -> None:
    from regional_training.report.verdict import compute_verdict

    jobs = [{"target": target("us-east-1", p, {"epochs": i + 1}).to_dict()} for i, p in enumerate(("p01", "p02"))]
    rows = [{"target_key": "d-v1_p01", "region_code": "us-east-1", "status": "Completed", "failure_reason": None},
            {"target_key": "d-v1_p02", "region_code": "us-east-1", "status": "Failed",
             "failure_reason": "AlgorithmError"}]
    verdict = compute_verdict(jobs, rows, train_states={0: "success", 1: "failed"})
    assert not verdict.ok
    assert any("d-v1_p02 (us-east-1" in line for line in verdict.lines() if line.startswith("NOT COMPLETE"))


def test_a_left_out_scan_point_is_named_with_its_point_wherever_its_dataset_is() -> None:
    # Issue 33: each point of a dataset is placed (and left out) on its own; "LEFT OUT d"
    # alone did not say which of d's points the budget dropped.
    from regional_training.report import report
    from regional_training.report.summary import summarize
    from regional_training.report.verdict import nothing_to_do_reason

    left_out = [{"dataset_key": "seattle-rain-2026-v1", "campaign_key": "seattle-rain-2026",
                 "reason": "over_budget", "explanation": "does not fit the budget", "point_id": "p02"},
                {"dataset_key": "dublin-urban-2026-v1", "campaign_key": "dublin-urban-2026", "reason": "no_capacity"}]
    text = summarize([], run_id="r", planned=0, left_out=left_out)["text"]
    assert "LEFT OUT seattle-rain-2026-v1 point p02 (seattle-rain-2026): over_budget" in text
    assert "LEFT OUT dublin-urban-2026-v1 (dublin-urban-2026): no_capacity" in text  # no scan: as before
    assert "seattle-rain-2026-v1 point p02 (over_budget)" in str(nothing_to_do_reason(planned=0, dry_run=False,
                                                                                       left_out=left_out))
    assert "seattle-rain-2026-v1 point p02" in report._left_out(left_out)
