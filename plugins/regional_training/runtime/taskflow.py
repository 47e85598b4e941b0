"""TaskFlow's ``@task`` for the DAG's task bodies, built without ``PythonOperator``.

Airflow's ``@task`` wraps each function in ``_PythonDecoratedOperator``, a
``PythonOperator``; importing that module imports its virtualenv machinery and
``packaging.requirements`` (about 11 ms of the 19 ms of Airflow modules that this DAG's
parse added to a bare DAG's: ``bench/dag_benchmarks.py --breakdown``). Our bodies run in the worker's
own interpreter and hand straight to :mod:`regional_training.tasks`, so they need only
what ``@task`` does around the call, which is Airflow's own documented way to make a
task decorator: :func:`airflow.sdk.bases.decorator.task_decorator_factory` with a
``DecoratedOperator`` (arguments captured and templated, ``XComArg`` inputs resolved,
``multiple_outputs``, ``.override``/``.expand``; the UI shows ``@task``).

What ``PythonOperator.execute`` adds and these bodies do not use is left out: a
``templates_dict``, and a callable that is async or yields ``Metadata``. Context keys are
passed to a body that names them, and the return value is logged, as ``@task`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.decorator import DecoratedOperator, determine_kwargs, task_decorator_factory
from airflow.sdk.definitions.context import context_merge

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator


class _CallOperator(BaseOperator):
    """Calls ``python_callable`` with the rendered ``op_args``/``op_kwargs`` (set by
    ``DecoratedOperator``), as ``PythonOperator.execute`` does for ``@task``: ``op_kwargs``
    joins the context, then the function gets its arguments plus any context key it names."""

    python_callable: Callable[..., Any]
    op_args: Collection[Any]
    op_kwargs: Mapping[str, Any]

    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        value = self.python_callable(*self.op_args, **determine_kwargs(self.python_callable, self.op_args, context))
        self.log.info("Done. Returned value was: %s", value)  # as PythonOperator logs it
        return value


class TaskBodyOperator(DecoratedOperator, _CallOperator):
    """What ``@task`` makes of a function: ``DecoratedOperator`` first (it checks the
    signature, captures the arguments and turns assets among them into lineage), then the
    call; the return value is the task's XCom."""

    custom_operator_name: str = "@task"


def task(python_callable: Callable | None = None, *, multiple_outputs: bool | None = None,
         **kwargs: Any) -> TaskDecorator:
    """``@task`` / ``@task(...)``: the operator keyword arguments are ``BaseOperator``'s."""
    return task_decorator_factory(python_callable=python_callable, multiple_outputs=multiple_outputs,
                                  decorated_operator_class=TaskBodyOperator, **kwargs)
