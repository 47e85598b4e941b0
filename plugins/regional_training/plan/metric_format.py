"""The training log's metric line and the SageMaker metric definitions that read it.

One definition, used on both sides of the contract: the training entry point prints
lines with :func:`format_metric_line`, the training-job request carries
:data:`METRIC_DEFINITIONS` (SageMaker applies those regexes to the job's logs), and the
local emulator reads final values back with :func:`parse_final_metrics`.

Standard library only: the training image copies this file in next to its entry point,
so it must not import Airflow or anything else from this package.
"""

from __future__ import annotations

import re

#: Prefix of every metric line, so a regex never matches an unrelated log line.
LINE_PREFIX = "[metrics]"

#: Metric name (as SageMaker reports it) -> key printed in the log line.
METRIC_KEYS: dict[str, str] = {
    "train:images_per_sec": "images_per_sec",
    "train:loss": "train_loss",
    "train:accuracy": "train_accuracy",
    "validation:loss": "val_loss",
    "validation:accuracy": "val_accuracy",
}

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

#: ``MetricDefinitions`` of a ``CreateTrainingJob`` request. The leading space (or
#: the prefix) keeps ``train_loss=`` from matching inside ``val_train_loss=``-like keys.
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"{re.escape(LINE_PREFIX)}.* {key}={_NUMBER}"}
    for name, key in METRIC_KEYS.items()
]


def format_metric_line(**values: float | int) -> str:
    """Render one metric line: ``[metrics] step=10 epoch=1 train_loss=2.3026 ...``.

    Integers (step, epoch) print as integers, floats with enough digits to compare.
    """
    parts = [LINE_PREFIX]
    for key, value in values.items():
        if not re.fullmatch(r"[a-z_]+", key):
            raise ValueError(f"metric key {key!r} must be lower-case letters and '_'")
        parts.append(f"{key}={value}" if isinstance(value, int) else f"{key}={value:.6g}")
    return " ".join(parts)


def parse_final_metrics(
    log_text: str, definitions: list[dict[str, str]] | None = None
) -> dict[str, float]:
    """Return each metric's last value in ``log_text``, as SageMaker's final metrics.

    ``definitions`` defaults to :data:`METRIC_DEFINITIONS`; the emulator passes the
    request's own definitions so it reads what SageMaker would.
    """
    final: dict[str, float] = {}
    for definition in definitions if definitions is not None else METRIC_DEFINITIONS:
        pattern = re.compile(definition["Regex"])
        for line in log_text.splitlines():
            match = pattern.search(line)
            if match:
                final[definition["Name"]] = float(match.group(1))
    return final
