"""The shared metric-line format (``plugins/regional_training/metric_format.py``).

There is one definition of the log line and of the regexes SageMaker applies to it.
In the image the Dockerfile copies ``metric_format.py`` next to the entry point
(``/opt/ml/code``, which is on ``sys.path`` as the script's directory). Run from the
repository, there is no copy: the import falls back to the repository's file, found
relative to this one (``images/training/resnet_hvd`` -> ``plugins/regional_training``),
so nothing needs PYTHONPATH beyond ``images/training``.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import metric_format
except ModuleNotFoundError:
    _REPO_COPY = Path(__file__).resolve().parents[3] / "plugins" / "regional_training"
    if not (_REPO_COPY / "metric_format.py").is_file():
        raise
    sys.path.append(str(_REPO_COPY))
    import metric_format

format_metric_line = metric_format.format_metric_line
METRIC_DEFINITIONS = metric_format.METRIC_DEFINITIONS

__all__ = ["METRIC_DEFINITIONS", "format_metric_line", "metric_format"]
