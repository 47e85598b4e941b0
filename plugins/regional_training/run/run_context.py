"""One DAG run as its tasks see it (:class:`Run`), and :func:`current_run` inside a task.

Below every task body, the recording and the operators, which all take a ``Run``: the
way to reach the run's ids, Params, deployment settings, S3 layout and the campaign
database. It imports the package's modules only inside its methods (the DAG's parse
imports it through ``tasks``, which must stay cheap: ``bench/dag_benchmarks.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regional_training.run.run_layout import RunLayout
    from regional_training.runtime.settings import Settings


@dataclass(frozen=True)
class Run:
    """One DAG run as its tasks see it."""

    dag_id: str
    run_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: The running task instance (XCom), when there is one.
    ti: Any = None
    #: The conf the run was triggered with, as given (Params are checked strictly against it).
    conf: Mapping[str, Any] = field(default_factory=dict)
    #: The moment the run decides "as of" (its ``run_after``: the same on every retry,
    #: never ``now()``), e.g. the end of the reuse window.
    as_of: datetime | None = None
    #: The task's template context (asset events in and out), when there is one.
    context: Mapping[str, Any] | None = None

    @cached_property
    def settings(self) -> Settings:
        from regional_training.runtime.settings import load_settings

        return load_settings()

    @property
    def layout(self) -> RunLayout:
        from regional_training.run.run_layout import RunLayout

        return RunLayout(self.settings.central_bucket, self.dag_id, self.run_id)

    def emit_model_event(self, row: Mapping[str, Any], *, campaign_key: str | None) -> None:
        """The row's model event (:func:`regional_training.run.assets.emit_model_event`), as the
        running task declares its outlets; nothing outside a task."""
        if self.context is None or "outlet_events" not in self.context:
            return
        from regional_training.run import assets

        assets.emit_model_event(self.context["outlet_events"], row, campaign_key=campaign_key,
                                outlets=getattr(self.context.get("task"), "outlets", None) or ())

    @contextmanager
    def campaign_db(self) -> Iterator[Any]:
        """The campaign database through its Airflow connection, closed afterwards."""
        from regional_training.runtime.campaign_db import airflow_connection

        conn = airflow_connection()
        try:
            yield conn
        finally:
            conn.close()


def current_run() -> Run:
    """The run of the task being executed (call inside a task only)."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    dag_run = context.get("dag_run")
    conf = dict(getattr(dag_run, "conf", None) or {})
    as_of = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None)
    return Run(context["dag"].dag_id, context["run_id"], dict(context["params"]), context.get("ti"), conf,
               as_of, context)
