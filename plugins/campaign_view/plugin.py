"""Registers the campaign view with Airflow 3: its FastAPI app in the API server, an entry
in the UI's navigation (an external view the UI shows in a frame at ``/plugin/campaign``)
and the ``summarize`` task's report link.

Only light imports here: every Airflow component loads plugins, the API server alone
serves the app.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from campaign_view.app import PREFIX, app
from regional_training.report.links import RunReportLink
from regional_training.runtime.taskflow import TaskBodyOperator


class SummarizeReportLink(RunReportLink):
    """The report link on the DAG's ``summarize`` @task (empty on every other task)."""

    operators = [TaskBodyOperator]  # type: ignore[assignment]


class CampaignViewPlugin(AirflowPlugin):
    name = "campaign_view"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Training campaigns"}]
    external_views = [
        {
            "name": "Training campaigns",
            "href": f"{PREFIX}/",
            "destination": "nav",
            "url_route": "campaign",
            "category": "browse",
        }
    ]
    # ``summarize`` is a @task: the link is attached to decorated tasks and resolved by
    # the API server; it returns a URL for the summarize task only.
    operator_extra_links = [SummarizeReportLink()]
