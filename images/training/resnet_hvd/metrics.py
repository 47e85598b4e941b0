"""The shared metric-line format, from the project's package (``regional_training.plan.metric_format``).

There is one definition of the log line and of the regexes SageMaker applies to it. The
training image installs the package (``pip install --no-deps``: ``metric_format`` needs
nothing beyond the standard library), and so does the local training venv
(``scripts/setup_training_env.sh``, a copy too), so the entry point imports it like any
other package, from the image and from the repository alike.
"""

from __future__ import annotations

from regional_training.plan import metric_format
from regional_training.plan.metric_format import METRIC_DEFINITIONS, format_metric_line

__all__ = ["METRIC_DEFINITIONS", "format_metric_line", "metric_format"]
