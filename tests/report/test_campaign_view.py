"""The campaign view in a real ``airflow api-server``: behind Airflow's authentication,
listed in the UI's navigation, rendered in headless chromium for a logged-in session,
linking each run to its report (served from the emulator's central bucket)."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import report_support as rs
from api_server_support import USERS, VIEWER, ApiServer

from regional_training.report.report import LOG_GROUP, TARGETS_CSV, render_report, targets_csv
from regional_training.run.run_layout import RunLayout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Three nights of the same four targets, so the trend charts have lines.
NIGHTS = ("scheduled__2026-11-25T02:00:00+00:00", "scheduled__2026-11-26T02:00:00+00:00",
          "scheduled__2026-11-27T02:00:00+00:00")
DAG_ID = "campaign_view_test"
#: A night whose four targets were all reused from the last night: done, not "0 / 4".
REUSED_NIGHT = "scheduled__2026-11-28T02:00:00+00:00"
#: A test-only user of the shared api-server (a viewer: may read DAG runs; tests/api_server_support.py).
USER, PASSWORD = VIEWER, USERS[VIEWER][1]
LOGGED_JOB = "mrt-campaign-view-logged-job"


def _record_runs(dsn: str) -> list[dict[str, Any]]:
    """Three nights' rows in training_runs through the collectors' own UPSERT."""
    import psycopg2

    from regional_training.plan import reuse, scan
    from regional_training.runtime import campaign_db

    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT dataset_key, dataset_id FROM datasets")  # test set-up only, no user input
        ids = dict(cur.fetchall())
    recorded = []
    for night_index, run_id in enumerate(NIGHTS):
        summary, _ = rs.four_region_run()
        for row in summary["rows"]:
            start = row["training_start_time"].replace("2026-11-27", run_id[11:21])
            recorded_row = {
                **row, "dag_id": DAG_ID, "run_id": run_id, "dataset_id": ids[row["target_key"]], "copy_id": None,
                "training_start_time": start, "training_end_time": None,
                "actual_cost_usd": row["actual_cost_usd"] + night_index,
                "metrics": {**row["metrics"], "train:accuracy": 0.5 + 0.1 * night_index},
            }
            campaign_db.execute(conn, "upsert_training_run.sql",
                                {**recorded_row, **reuse.NOT_REUSED, **scan.NO_POINT,
                                 "metrics": json.dumps(recorded_row["metrics"])})
            recorded.append(recorded_row)
    for row in [r for r in recorded if r["run_id"] == NIGHTS[-1]]:
        reused = {**row, "run_id": REUSED_NIGHT, "status": "Reused", "attempt": 0, "actual_cost_usd": 0.0,
                  "training_start_time": None, "training_end_time": None, "billable_seconds": 0,
                  "reused_from_dag_id": DAG_ID, "reused_from_run_id": NIGHTS[-1],
                  "reused_from_target_key": row["target_key"]}
        campaign_db.execute(conn, "upsert_training_run.sql",
                            {**reuse.NOT_REUSED, **scan.NO_POINT, **reused, "metrics": json.dumps(reused["metrics"])})
        recorded.append(reused)
    conn.close()
    return recorded


@pytest.fixture(scope="module")
def campaign_server(api_server: ApiServer) -> str:
    """The session's api-server (tests/conftest.py): real users and passwords, not "all
    admins" (which lets anonymous requests in); its campaign-view links point at itself."""
    return api_server.base


@pytest.fixture(scope="module")
def recorded(campaign_dsn: str, aws_endpoint: str) -> list[dict[str, Any]]:
    """The runs in the DB, and the newest night's report in the central bucket."""
    import boto3

    from dev.local_stack import CENTRAL_BUCKET

    rows = _record_runs(campaign_dsn)
    logs = boto3.client("logs", endpoint_url=aws_endpoint, region_name="eu-west-1")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f"{LOGGED_JOB}/algo-1-1764300000")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=f"{LOGGED_JOB}/algo-1-1764300000",
                        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(rs.log_lines(0))])
    summary, series = rs.four_region_run()
    summary["run_id"] = NIGHTS[-1]
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    key = RunLayout(central_bucket=CENTRAL_BUCKET, dag_id=DAG_ID, run_id=NIGHTS[-1]).report.split("/", 3)[3]
    s3.put_object(Bucket=CENTRAL_BUCKET, Key=key,
                  Body=render_report(summary, series).encode(), ContentType="text/html; charset=utf-8")
    s3.put_object(Bucket=CENTRAL_BUCKET, Key=key.rsplit("/", 1)[0] + "/" + TARGETS_CSV,
                  Body=targets_csv(summary["rows"]).encode(), ContentType="text/csv; charset=utf-8")
    return rows


def _get(url: str, token: str | None = None, data: bytes | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, headers=headers, data=data)  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _token(base: str) -> str:
    status, body = _get(f"{base}/auth/token", data=json.dumps({"username": USER, "password": PASSWORD}).encode())
    assert status in (200, 201), body
    return str(json.loads(body)["access_token"])


def test_anonymous_requests_are_refused(campaign_server: str, recorded: list[dict[str, Any]]) -> None:
    report = f"/campaign/runs/{DAG_ID}/{quote(NIGHTS[-1], safe='')}/report"
    for path in ("/campaign/", report, "/campaign/jobs/us-east-1/any-job", "/campaign/logs/us-east-1/any-job"):
        status, _ = _get(campaign_server + path)
        assert status in (401, 403), path
        status, _ = _get(campaign_server + path, token="not-a-valid-token")
        assert status in (401, 403), path


def test_the_view_lists_runs_and_bad_input_is_a_clear_error(campaign_server: str, recorded: list[dict]) -> None:
    token = _token(campaign_server)
    status, page = _get(f"{campaign_server}/campaign/?limit=500", token)
    assert status == 200, page
    runs = {r["run (report)"]: r for r in rs.tables(page)["runs"] if r["DAG"] == DAG_ID}
    assert sorted(runs) == sorted([*NIGHTS, REUSED_NIGHT])
    # every target reused: done, and said to be reused (issue 33: it read "0 / 4")
    assert runs[REUSED_NIGHT]["completed"] == "4 / 4 (4 reused) done"
    for index, night in enumerate(NIGHTS):
        rows = [r for r in recorded if r["run_id"] == night]
        assert runs[night]["completed"] == "4 / 4 done"
        assert runs[night]["regions"] == ", ".join(sorted(r["region_code"] for r in rows))
        assert runs[night]["planned USD"] == f"{sum(r['planned_cost_usd'] for r in rows):.2f}"
        assert runs[night]["actual USD"] == f"{sum(r['actual_cost_usd'] for r in rows):.2f}", index
    status, body = _get(f"{campaign_server}/campaign/?limit=0", token)
    assert status == 422 and "limit" in body
    status, body = _get(f"{campaign_server}/campaign/jobs/not-a-region/job", token)
    assert status == 400 and "not-a-region" in body
    status, body = _get(f"{campaign_server}/campaign/jobs/us-east-1/no-such-job", token)
    assert status == 404 and "no-such-job" in body
    status, body = _get(f"{campaign_server}/campaign/runs/{DAG_ID}/no-such-run/report", token)
    assert status == 404 and "no-such-run" in body
    # the CSV beside the report, where the report's relative link lands through the view
    status, body = _get(f"{campaign_server}/campaign/runs/{DAG_ID}/{quote(NIGHTS[-1], safe='')}/{TARGETS_CSV}", token)
    assert status == 200 and body.splitlines()[0].startswith("region,target,status") and len(body.splitlines()) == 5
    status, body = _get(f"{campaign_server}/campaign/runs/{DAG_ID}/no-such-run/{TARGETS_CSV}", token)
    assert status == 404 and "no-such-run" in body
    # the train task's offline "logs" link: the job's streams in its own region
    status, body = _get(f"{campaign_server}/campaign/logs/eu-west-1/{LOGGED_JOB}", token)
    assert status == 200 and body.splitlines()[0] == f"== {LOGGED_JOB}/algo-1-1764300000", body
    assert body.splitlines()[1:] == rs.log_lines(0)
    status, body = _get(f"{campaign_server}/campaign/logs/us-west-2/{LOGGED_JOB}", token)
    assert status == 404


def test_the_view_is_in_the_ui_navigation(campaign_server: str) -> None:
    status, body = _get(f"{campaign_server}/api/v2/plugins", _token(campaign_server))
    assert status == 200, body
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "campaign_view")
    assert plugin["external_views"][0]["href"] == "/campaign/"
    assert plugin["external_views"][0]["url_route"] == "campaign"


def test_a_logged_in_session_sees_the_view_and_opens_a_report(
    campaign_server: str, recorded: list[dict], browser: Any, artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    # Log in through Airflow's own login form: it sets the UI's session cookie.
    browser.get(f"{campaign_server}/auth/login?next={quote(campaign_server + '/campaign/?limit=500')}")
    WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=password]")))
    username = browser.find_element(By.CSS_SELECTOR, "input:not([type=password]):not([type=hidden])")
    username.send_keys(USER)
    password = browser.find_element(By.CSS_SELECTOR, "input[type=password]")
    password.send_keys(PASSWORD)
    password.submit()
    WebDriverWait(browser, 60).until(expected_conditions.title_is("Training campaigns"))
    assert browser.execute_script("return document.querySelectorAll('svg.chart').length") == 3
    # each chart: a named line (and key entry) per dataset/region, none unnamed
    charts = rs.assert_every_line_named(browser)
    # a line per dataset/region: this module's four at least (other tests' runs recorded in
    # the session's campaign DB add theirs: 6 in the whole suite)
    assert all(named >= 4 for _, named, _, _ in charts), charts
    browser.set_window_size(1440, 1000)
    assert browser.execute_script(rs.SIDEWAYS_JS) == [False, []]
    assert rs.console_errors(browser) == []
    shot = artifacts / "campaign-view.png"
    rs.full_page_screenshot(browser, shot)
    rs.assert_not_blank(shot)

    browser.find_element(By.LINK_TEXT, NIGHTS[-1]).click()
    WebDriverWait(browser, 30).until(expected_conditions.title_contains(NIGHTS[-1]))
    assert browser.execute_script("return document.querySelectorAll('svg.chart').length") == 5
    rs.assert_every_line_named(browser)
    assert rs.console_errors(browser) == []
    shot = artifacts / "campaign-view-report.png"
    rs.full_page_screenshot(browser, shot)
    rs.assert_not_blank(shot)

    # Inside Airflow's own UI: the navigation entry opens the view in its frame.
    browser.set_window_size(1280, 1000)
    browser.get(f"{campaign_server}/plugin/campaign")
    frame = WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "iframe[src*='/campaign/']")))
    browser.switch_to.frame(frame)
    WebDriverWait(browser, 60).until(expected_conditions.presence_of_element_located((By.ID, "runs")))
    browser.switch_to.default_content()
    shot = artifacts / "campaign-view-in-airflow-ui.png"
    assert browser.save_screenshot(str(shot))
    rs.assert_not_blank(shot)


def test_a_trend_chart_of_16_lines_names_each_and_past_its_limit_one_per_region() -> None:
    """Issue 33: 16 dataset/region lines had no key. Drawn here without the server: the
    same function the page calls; the SVG's series and key entries counted from its text."""
    import re
    from datetime import UTC, datetime, timedelta

    from campaign_view.app import TREND_LINES, trend_chart

    def points(datasets: int) -> list[dict[str, Any]]:
        return [{"dataset_key": f"dataset-{d:02d}", "region_code": rs.REGIONS[d % 4],
                 "night": datetime(2026, 11, 25, 2, tzinfo=UTC) + timedelta(days=n),
                 "accuracy": 0.5 + 0.01 * d + n / 10}
                for d in range(datasets) for n in range(3)]

    def counts(svg: str) -> tuple[int, int, int]:
        named = len(set(re.findall(r'<g id="(series-\d+)"', svg)))
        legend = svg[svg.index('<g id="legend_1">'):]
        return named, len(re.findall(r'<g id="text_\d+"', legend)), len(re.findall(r'<g id="line2d_', svg))

    sixteen = trend_chart(points(16), "accuracy", "accuracy")
    named, keys, _ = counts(sixteen)
    assert named == keys == 16
    for d in range(16):
        assert f"dataset-{d:02d} ({rs.REGIONS[d % 4]})" in sixteen
    many = trend_chart(points(TREND_LINES + 5), "accuracy", "accuracy")
    named, keys, _ = counts(many)
    assert named == keys == 4 and "us-west-2 (median of" in many
