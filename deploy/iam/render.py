"""Render the IAM policy templates in this folder into deployable JSON documents.

Templates hold placeholders:

=============================  =======  ==============================================
placeholder                    kind     value
=============================  =======  ==============================================
``${ACCOUNT_ID}``              scalar   the AWS account id (12 digits)
``${EXECUTION_ROLE_NAME}``     scalar   the SageMaker execution role's name
``${CENTRAL_BUCKET}``          scalar   ``mrt_central_bucket``
``${TRAINING_IMAGE_REPOSITORY}`` scalar ``mrt_training_image_repository``
``${NOTIFICATION_TOPIC_ARN}``  scalar   ``mrt_notification_topic_arn`` (run notifications)
``${REGIONS}``                 list     training regions
``${DATA_BUCKETS}``            list     buckets holding dataset copies (``datasets/``)
``${OUTPUT_BUCKETS}``          list     per-region SageMaker output buckets
=============================  =======  ==============================================

A string holding a list placeholder must sit in a JSON list; it expands there into one
string per value (two list placeholders: every combination).

Lists come from flags or from the campaign-metadata database (``--campaign-dsn``)::

    python -m deploy.iam.render --account-id 111122223333 \\
        --execution-role-name mrt-sagemaker-execution --central-bucket mrt-central-artifacts \\
        --training-image-repository multi-region-training/resnet50-horovod \\
        --notification-topic-arn arn:aws:sns:eu-west-1:111122223333:mrt-training-runs \\
        --campaign-dsn postgresql://user:pass@host:5432/campaigns --out-dir build/iam
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy import campaign_targets
from regional_training.report.notifications import TOPIC_ARN_PATTERN
from regional_training.runtime import identifiers

TEMPLATE_DIR = Path(__file__).resolve().parent
TEMPLATES = (
    "airflow-role.policy.json",
    "sagemaker-execution-role.policy.json",
    "sagemaker-execution-role.trust.json",
    # launcher=batch_array: the array children's role (regional_training.launch.batch_launcher).
    "batch-launcher-role.policy.json",
    "batch-launcher-role.trust.json",
)
SCALARS = ("ACCOUNT_ID", "EXECUTION_ROLE_NAME", "CENTRAL_BUCKET", "TRAINING_IMAGE_REPOSITORY", "NOTIFICATION_TOPIC_ARN")
LISTS = ("REGIONS", "DATA_BUCKETS", "OUTPUT_BUCKETS")
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")

def _pattern(regex: str) -> Callable[[object], bool]:
    compiled = re.compile(regex)
    return lambda value: isinstance(value, str) and compiled.fullmatch(value) is not None


#: Region and bucket rules are the package's (regional_training.runtime.identifiers).
_CHECKS: dict[str, Callable[[object], bool]] = {
    "ACCOUNT_ID": _pattern(r"^[0-9]{12}$"),
    "EXECUTION_ROLE_NAME": _pattern(r"^[\w+=,.@-]{1,64}$"),
    "CENTRAL_BUCKET": identifiers.is_bucket,
    "TRAINING_IMAGE_REPOSITORY": _pattern(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$"),
    # The topic the watcher publishes to: one standard topic, the rule is the package's.
    "NOTIFICATION_TOPIC_ARN": _pattern(TOPIC_ARN_PATTERN),
    "REGIONS": identifiers.is_region,
    "DATA_BUCKETS": identifiers.is_bucket,
    "OUTPUT_BUCKETS": identifiers.is_bucket,
}


class RenderError(ValueError):
    pass


def validate(values: dict[str, Any]) -> None:
    for name in SCALARS + LISTS:
        if name not in values:
            raise RenderError(f"missing value for ${{{name}}}")
        items = values[name] if name in LISTS else [values[name]]
        if name in LISTS and (not isinstance(items, list) or not items):
            raise RenderError(f"${{{name}}} needs a non-empty list")
        for item in items:
            if not _CHECKS[name](item):
                raise RenderError(f"bad value for ${{{name}}}: {item!r}")


def _expand(text: str, values: dict[str, Any]) -> list[str]:
    names = PLACEHOLDER.findall(text)
    for name in names:
        if name not in values:
            raise RenderError(f"unknown placeholder ${{{name}}} in {text!r}")
    list_names = sorted({n for n in names if n in LISTS})
    out = []
    for combo in itertools.product(*(values[n] for n in list_names)):
        chosen = dict(zip(list_names, combo, strict=True))
        out.append(PLACEHOLDER.sub(lambda m, chosen=chosen: chosen.get(m.group(1), values[m.group(1)]), text))
    return out


def render(template: Any, values: dict[str, Any]) -> Any:
    """The template with placeholders replaced (list placeholders expanded in lists)."""
    if isinstance(template, dict):
        return {key: render(value, values) for key, value in template.items()}
    if isinstance(template, list):
        rendered: list[Any] = []
        for item in template:
            if isinstance(item, str):
                rendered.extend(x for x in _expand(item, values) if x not in rendered)
            else:
                rendered.append(render(item, values))
        return rendered
    if isinstance(template, str):
        expanded = _expand(template, values)
        if len(expanded) != 1:
            raise RenderError(f"{template!r} expands to {len(expanded)} strings: put it in a JSON list")
        return expanded[0]
    return template


def load_template(name: str) -> Any:
    return json.loads((TEMPLATE_DIR / name).read_text(encoding="utf-8"))


def render_all(values: dict[str, Any]) -> dict[str, Any]:
    """Every template rendered, keyed by file name."""
    validate(values)
    return {name: render(load_template(name), values) for name in TEMPLATES}


def _csv(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deploy.iam.render", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--execution-role-name", default="mrt-sagemaker-execution")
    parser.add_argument("--central-bucket", required=True)
    parser.add_argument("--training-image-repository", default="multi-region-training/resnet50-horovod")
    parser.add_argument("--notification-topic-arn", required=True,
                        help="the SNS topic of run notifications (the Variable mrt_notification_topic_arn)")
    parser.add_argument("--campaign-dsn", help="read regions and buckets from the campaign-metadata DB")
    parser.add_argument("--regions", action="append", default=[], help="comma-separated (repeatable)")
    parser.add_argument("--data-buckets", action="append", default=[], help="comma-separated (repeatable)")
    parser.add_argument("--output-buckets", action="append", default=[], help="comma-separated (repeatable)")
    parser.add_argument("--out-dir", type=Path, help="write the documents here (default: print them)")
    args = parser.parse_args(argv)

    values: dict[str, Any] = {
        "ACCOUNT_ID": args.account_id,
        "EXECUTION_ROLE_NAME": args.execution_role_name,
        "CENTRAL_BUCKET": args.central_bucket,
        "TRAINING_IMAGE_REPOSITORY": args.training_image_repository,
        "NOTIFICATION_TOPIC_ARN": args.notification_topic_arn,
        "REGIONS": _csv(args.regions),
        "DATA_BUCKETS": _csv(args.data_buckets),
        "OUTPUT_BUCKETS": _csv(args.output_buckets),
    }
    if args.campaign_dsn:
        conn = campaign_targets.connect(args.campaign_dsn)
        try:
            values["REGIONS"] = values["REGIONS"] or campaign_targets.regions(conn)
            values["DATA_BUCKETS"] = values["DATA_BUCKETS"] or campaign_targets.data_buckets(conn)
            values["OUTPUT_BUCKETS"] = values["OUTPUT_BUCKETS"] or campaign_targets.output_buckets(conn)
        finally:
            conn.close()
    try:
        documents = render_all(values)
    except RenderError as exc:
        parser.error(str(exc))
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for name, doc in documents.items():
            (args.out_dir / name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            print(args.out_dir / name)
    else:
        print(json.dumps(documents, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
