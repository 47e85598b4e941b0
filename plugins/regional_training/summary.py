"""One summary per DAG run: every target's outcome, side by side."""

from __future__ import annotations

from datetime import datetime
from typing import Any

COLUMNS = ("region", "target", "status", "duration_s", "images/sec", "loss", "accuracy", "artifact / reason")


def _duration(row: dict[str, Any]) -> float | None:
    start, end = row.get("training_start_time"), row.get("training_end_time")
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summarize(rows: list[dict[str, Any]], *, run_id: str, dry_run: bool = False, planned: int = 0) -> dict[str, Any]:
    """Build the run summary from the collectors' rows (one per target)."""
    rows = sorted(rows, key=lambda r: (r["region_code"], r["target_key"]))
    failed = [
        {"region": r["region_code"], "target": r["target_key"], "status": r["status"], "reason": r["failure_reason"]}
        for r in rows
        if r["status"] != "Completed"
    ]
    table = [COLUMNS]
    for r in rows:
        metrics = r.get("metrics") or {}
        table.append(
            (
                r["region_code"],
                r["target_key"],
                r["status"],
                _fmt(_duration(r), ".0f"),
                _fmt(metrics.get("train:images_per_sec"), ".1f"),
                _fmt(metrics.get("train:loss"), ".4f"),
                _fmt(metrics.get("train:accuracy"), ".4f"),
                r["model_artifact_uri"] or (r["failure_reason"] or ""),
            )
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(COLUMNS))]
    text_lines = [f"Run {run_id}: " + (
        f"dry run, {planned} training request(s) built, nothing launched"
        if dry_run
        else f"{len(rows) - len(failed)} of {len(rows)} target(s) completed"
    )]
    if rows:
        text_lines += ["  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table]
    if failed:
        text_lines.append("FAILED regions: " + ", ".join(f"{f['region']} ({f['reason']})" for f in failed))
    return {
        "run_id": run_id,
        "dry_run": dry_run,
        "targets": len(rows),
        "completed": len(rows) - len(failed),
        "failed": failed,
        "rows": rows,
        "text": "\n".join(text_lines),
    }


class RegionsFailedError(RuntimeError):
    """Raised by the watcher so a run with a failed region ends failed."""


def raise_if_failed(summary: dict[str, Any] | None) -> None:
    if summary is None:
        raise RegionsFailedError("the run summary is missing: an upstream step failed before collection")
    if summary["failed"]:
        regions = sorted({f["region"] for f in summary["failed"]})
        details = "; ".join(f"{f['region']} {f['target']}: {f['status']} ({f['reason']})" for f in summary["failed"])
        raise RegionsFailedError(f"training failed in region(s) {', '.join(regions)}: {details}")
