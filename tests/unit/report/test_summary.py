from __future__ import annotations

from regional_training.report.summary import summarize


def row(region: str, status: str, **extra: object) -> dict:
    base = {"region_code": region, "target_key": f"{region}-data", "status": status, "failure_reason": None,
            "training_start_time": "2026-11-27T02:00:00+00:00", "training_end_time": "2026-11-27T03:30:00+00:00",
            "metrics": {"train:images_per_sec": 2300.5, "train:loss": 1.25, "train:accuracy": 0.75},
            "model_artifact_uri": f"s3://central/{region}/model.tar.gz", "purchase_option": "spot",
            "planned_cost_usd": 10.0, "actual_cost_usd": 8.5, "moves": []}
    return {**base, **extra}


def test_summary_lists_every_region_with_costs_and_left_out_targets() -> None:
    result = summarize(
        [row("us-east-1", "Completed"), row("eu-west-1", "Failed", failure_reason="AlgorithmError: boom",
                                             model_artifact_uri=None, actual_cost_usd=None)],
        run_id="r1",
        left_out=[{"dataset_key": "big-v1", "campaign_key": "big", "reason": "over_budget"}],
    )
    assert result["completed"] == 1 and result["failed"][0]["region"] == "eu-west-1"
    assert result["planned_cost_usd"] == 20.0 and result["actual_cost_usd"] == 8.5
    text = result["text"]
    assert "1 of 2 target(s) completed" in text
    assert "5400" in text and "2300.5" in text and "s3://central/us-east-1/model.tar.gz" in text
    assert "LEFT OUT big-v1 (big): over_budget" in text
    assert "FAILED regions: eu-west-1 (AlgorithmError: boom)" in text


def test_the_count_is_of_planned_targets_not_of_rows_that_arrived() -> None:
    # Three planned, one collector never returned a row: "1 of 3", not "1 of 2".
    result = summarize([row("us-east-1", "Completed"), row("eu-west-1", "Failed")], run_id="r2", planned=3)
    assert result["targets"] == 3 and "1 of 3 target(s) completed" in result["text"]


def test_collected_rows_accepts_the_shapes_airflow_hands_over() -> None:
    from regional_training.tasks import collected_rows

    one = row("us-east-1", "Completed")
    assert collected_rows(None) == []
    assert collected_rows(one) == [one]  # a mapped group that expanded once
    assert collected_rows([one, None]) == [one]  # a collector that returned nothing


def test_a_reused_target_is_done_costs_nothing_and_shows_the_saving() -> None:
    reused = row("us-west-2", "Reused", training_start_time=None, training_end_time=None, actual_cost_usd=0.0,
                 reused_from_run_id="scheduled__2026-11-27T02:00:00+00:00", training_job_name="job-1")
    result = summarize([row("us-east-1", "Completed"), reused], run_id="r3", planned=2)
    assert result["completed"] == 2 and result["failed"] == [] and result["reused"] == 1
    assert result["planned_cost_usd"] == 20.0 and result["actual_cost_usd"] == 8.5
    assert "2 of 2 target(s) completed (1 reused, not trained again)" in result["text"]
    assert ("REUSED us-west-2-data: identical to run scheduled__2026-11-27T02:00:00+00:00 (job job-1); "
            "saved 10.00 USD") in result["text"]
