"""One summary per DAG run: every target's outcome, side by side."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from regional_training.plan.targets import left_out_name

COLUMNS = (
    "region", "target", "option", "status", "duration_s", "images/sec", "loss", "accuracy",
    "planned $", "actual $", "moves", "artifact / reason",
)
#: Statuses whose target has its model (``Reused``: an identical earlier job's, copied).
DONE_STATUSES = frozenset({"Completed", "Reused"})


def _duration(row: dict[str, Any]) -> float | None:
    start, end = row.get("training_start_time"), row.get("training_end_time")
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _money(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 2) if known else None


def summarize(
    rows: list[dict[str, Any]],
    *,
    run_id: str,
    dry_run: bool = False,
    planned: int = 0,
    left_out: list[dict[str, Any]] | None = None,
    metric: tuple[str, bool] | None = None,
) -> dict[str, Any]:
    """Build the run summary from the recorded rows (one per target).

    In a parameter scan (rows with a ``point_id``) it also ranks each dataset's points
    by ``metric`` (name, higher is better; default ``scan.metric_of(None)``) with cost
    and images/sec, and names the best (``scan`` in the result)."""
    rows = sorted(rows, key=lambda r: (r["region_code"], r["target_key"]))
    failed = [
        {"region": r["region_code"], "target": r["target_key"], "status": r["status"], "reason": r["failure_reason"]}
        for r in rows
        if r["status"] not in DONE_STATUSES
    ]
    reused = [r for r in rows if r["status"] == "Reused"]
    table = [COLUMNS]
    for r in rows:
        metrics = r.get("metrics") or {}
        table.append(
            (
                r["region_code"],
                r["target_key"],
                r.get("purchase_option") or "-",
                r["status"],
                _fmt(_duration(r), ".0f"),
                _fmt(metrics.get("train:images_per_sec"), ".1f"),
                _fmt(metrics.get("train:loss"), ".4f"),
                _fmt(metrics.get("train:accuracy"), ".4f"),
                _fmt(r.get("planned_cost_usd"), ".2f"),
                _fmt(r.get("actual_cost_usd"), ".2f"),
                " ".join(f"{m['from_region']}->{m['to_region'] or 'none'}" for m in r.get("moves") or []) or "-",
                r["model_artifact_uri"] or (r["failure_reason"] or ""),
            )
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(COLUMNS))]
    text_lines = [f"Run {run_id}: " + (
        f"dry run, {planned} training request(s) built, nothing launched"
        if dry_run
        else f"{len(rows) - len(failed)} of {max(planned, len(rows))} target(s) completed"
        + (f" ({len(reused)} reused, not trained again)" if reused else "")
    )]
    if rows:
        text_lines += ["  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table]
    planned_total = _money([r.get("planned_cost_usd") for r in rows])
    actual_total = _money([r.get("actual_cost_usd") for r in rows])
    if rows:
        text_lines.append(f"cost: planned {_fmt(planned_total, '.2f')} USD, actual {_fmt(actual_total, '.2f')} USD")
    for item in left_out or []:
        text_lines.append(f"LEFT OUT {left_out_name(item)} ({item['campaign_key']}): {item['reason']}")
    for r in reused:
        text_lines.append(f"REUSED {r['target_key']}: identical to run {r.get('reused_from_run_id')} "
                          f"(job {r.get('training_job_name')}); saved {_fmt(r.get('planned_cost_usd'), '.2f')} USD")
    if failed:
        text_lines.append("FAILED regions: " + ", ".join(f"{f['region']} ({f['reason']})" for f in failed))
    ranking = _scan_ranking(rows, metric, text_lines)
    return {
        "run_id": run_id,
        "dry_run": dry_run,
        "targets": max(planned, len(rows)),
        "completed": len(rows) - len(failed),
        "reused": len(reused),
        "failed": failed,
        "left_out": list(left_out or []),
        "planned_cost_usd": planned_total,
        "actual_cost_usd": actual_total,
        "moves": {r["target_key"]: r.get("moves") or [] for r in rows},
        "rows": rows,
        **({"scan": ranking} if ranking else {}),
        "text": "\n".join(text_lines),
    }


def _scan_ranking(rows: list[dict[str, Any]], metric: tuple[str, bool] | None, text_lines: list[str]
                  ) -> dict[str, Any] | None:
    """A scan's points ranked per dataset (regional_training.plan.scan.rank), as text lines too."""
    from regional_training.plan import scan

    name, higher = metric or scan.metric_of(None)
    ranked = scan.rank(rows, name, higher)
    if not ranked:
        return None
    text_lines.append(f"SCAN ranked by {name} ({'higher' if higher else 'lower'} is better):")
    for dataset, entries in ranked.items():
        for e in entries:
            text_lines.append(
                f"  {dataset} {e['rank'] or '-'}. {e['point_id']} ({scan.describe(e['overrides'])}) "
                f"{_fmt(e['value'], '.4f')}, {_fmt(e['images_per_sec'], '.1f')} images/sec, "
                f"{_fmt(e['actual_cost_usd'], '.2f')} USD, {e['region']} {e['status']}"
                + ("  BEST" if e["best"] else ""))
    best = {dataset: next(e for e in entries if e["best"]) for dataset, entries in ranked.items()
            if any(e["best"] for e in entries)}
    for dataset, e in best.items():
        text_lines.append(f"BEST {dataset}: {e['point_id']} ({scan.describe(e['overrides'])}), {name} "
                          f"{_fmt(e['value'], '.4f')}")
    return {"metric": name, "higher_is_better": higher, "datasets": ranked, "best": best}
