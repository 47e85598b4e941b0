"""Benchmark: place_targets.sql for one night's selection (~100 datasets) at 10k and 1M.

For each size N it creates a database on a throwaway PostgreSQL server (dev/local_pg.py)
or on ``--dsn``'s server, applies the migrations and the sample data, loads N datasets
(N/4 campaigns x 4 datasets) x 4 regional copies with generate_series, marks 96
campaigns 'ready' (+ the 4 sample ones = 100 targets), and times the placement query
through psycopg2 exactly as the DAG runs it (client round trip: parse, plan, execute,
fetch), median of repeated runs interleaved across sizes and modes (so load from other
processes hits every case alike), for three ways of selecting the night's targets:

  ready      nightly default: empty lists, every 'ready' campaign's newest dataset
  campaigns  campaign_keys = the 100 ready campaigns
  datasets   dataset_ids = their 100 newest datasets
  scan-100   a parameter scan: 10 of those datasets x 10 points = 100 jobs
  scan-1000  all 100 datasets x 10 points = 1,000 jobs (most left out: no capacity)

then prints EXPLAIN (ANALYZE, BUFFERS) of the nightly query at each size.

Issue 31's failure model: every database also holds a history of HISTORY_TARGETS earlier
targets of the benchmark's instance type over the last 60 days (training_runs rows, one
in five with a placement_moves row: a move away from a region's spot offer), and each
case is timed twice in the same interleaved loop (with instances in use in each region,
as the select task counts them): with today's query and with
``bench/sql/place_targets_before_risk.sql`` (the query before the risk term, kept
verbatim), printing the ratio risk / before (goal <= 1.2x).

Wall time on a shared 2-core machine swings with its neighbours (1.06-1.40x between
runs of the same two queries), so each run also records the CPU it cost: the server
backend's on-CPU time (``/proc/<backend pid>/schedstat``, nanoseconds; the server runs
on this machine) and this client thread's (``time.thread_time_ns``: parsing the rows
into Python objects), and the order of the cases rotates each round. CPU time does not
grow when other processes take the cores, so its ratio is the stable figure; the wall
ratio is printed beside it.

    .venv/bin/python -m bench.placement_query [--sizes 10000,1000000] [--repeats 51]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

READY_GENERATED = 96
PARAMS = {
    "region_codes": [],
    "instance_type": "ml.g5.12xlarge",
    "instance_count": 1,
    "estimated_hours": 6,
    "budget_usd": 700,
    "allowed_purchase_options": [],
    "point_ids": [],
    "risk_half_life_days": 14,
    "failover_delay_hours": 1,
    "as_of": None,
    "learn_from_failures": True,
    # instances other jobs already use (regional_training.plan.capacity), taken off the quotas
    "in_use_regions": ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"],
    "in_use_instances": [3, 2, 1, 0],
}
#: Earlier targets in the failure model's history (training_runs rows).
HISTORY_TARGETS = 20_000
BEFORE_RISK_SQL = ROOT / "bench" / "sql" / "place_targets_before_risk.sql"
#: A parameter scan's points (regional_training.plan.scan numbers them p01, p02, ...).
POINTS = [f"p{i:02d}" for i in range(1, 11)]

# N/4 campaigns, 4 datasets each (relabels, newest last), every dataset copied into the
# four sample regions (one copy in 50 still syncing). FK triggers are skipped while
# loading (session_replication_role) because the generated keys are consistent.
LOAD_SQL = """
SET session_replication_role = replica;
INSERT INTO campaigns (campaign_id, campaign_key, recorded_region, recorded_from, recorded_to,
                       vehicle_fleet, status)
OVERRIDING SYSTEM VALUE
SELECT 100 + g, 'bench-c' || g, (ARRAY['us-east-1','us-west-2','eu-west-1','eu-central-1'])[1 + g %% 4],
       '2025-01-01', '2025-02-01', 'fleet-' || (g %% 7),
       CASE WHEN g %% %(step)s = 0 AND g / %(step)s <= %(ready)s THEN 'ready' ELSE 'archived' END
  FROM generate_series(1, %(n)s / 4) AS g;
INSERT INTO datasets (dataset_id, campaign_id, dataset_key, label_schema, record_count, size_bytes,
                      created_at)
OVERRIDING SYSTEM VALUE
SELECT 100 + g, 100 + (g - 1) / 4 + 1, 'bench-d' || g, 'imagenet-tfrecord-v1', 1000 + g %% 997,
       (10 + g %% 90)::bigint * 1000000000, timestamptz '2025-03-01' + ((g - 1) %% 4) * interval '1 day'
  FROM generate_series(1, %(n)s) AS g;
INSERT INTO dataset_copies (copy_id, dataset_id, region_code, s3_uri, status, synced_at)
OVERRIDING SYSTEM VALUE
SELECT 100 + (g - 1) * 4 + r.i, 100 + g, r.code,
       's3://mrt-bench-' || r.code || '/d/' || g || '/',
       CASE WHEN (g + r.i) %% 50 = 0 THEN 'syncing' ELSE 'available' END, timestamptz '2025-03-05'
  FROM generate_series(1, %(n)s) AS g
 CROSS JOIN (VALUES (1, 'us-east-1'), (2, 'us-west-2'), (3, 'eu-west-1'), (4, 'eu-central-1')) AS r (i, code);
SET session_replication_role = DEFAULT;
-- the failure model's history: earlier targets of the benchmark's type, 60 days of them
-- (with the triggers on, as the collector writes them: they keep placement_outcomes_daily)
INSERT INTO training_runs (dag_id, run_id, target_key, region_code, dataset_id, training_job_name, status,
                           hyperparameters_sha256, instance_type, instance_count, attempt, purchase_option,
                           recorded_at)
SELECT 'bench-history', 'night-' || (g %% 60), 'target-' || g,
       (ARRAY['us-east-1','us-west-2','eu-west-1','eu-central-1'])[1 + g %% 4], 101 + g %% %(n)s,
       'job-' || g, 'Completed', repeat('0', 64), 'ml.g5.12xlarge', 1, 1,
       (ARRAY['spot','on_demand','spot','reserved','spot'])[1 + g %% 5],
       now() - (g %% 60) * interval '1 day'
  FROM generate_series(1, %(history)s) AS g;
INSERT INTO placement_moves (dag_id, run_id, target_key, move_number, from_region, to_region, from_option,
                             to_option, error_code, error_message, moved_at)
SELECT 'bench-history', 'night-' || (g %% 60), 'target-' || g, 1,
       (ARRAY['eu-west-1','us-east-1','eu-central-1','us-west-2'])[1 + g %% 4],
       (ARRAY['us-east-1','us-west-2','eu-west-1','eu-central-1'])[1 + g %% 4], 'spot', 'on_demand',
       'MaxWaitTimeExceeded', 'no spot capacity within MaxWaitTimeInSeconds',
       now() - (g %% 60) * interval '1 day'
  FROM generate_series(5, %(history)s, 5) AS g;
-- a night with room for most, not all, of the 100 targets
UPDATE instance_capacity SET quota_instances = CASE region_code
        WHEN 'us-east-1' THEN 30 WHEN 'us-west-2' THEN 25 WHEN 'eu-west-1' THEN 15 ELSE 10 END,
       reserved_instances = CASE region_code WHEN 'us-west-2' THEN 20 ELSE 0 END
 WHERE instance_type = 'ml.g5.12xlarge';
"""


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from dev.local_pg import temporary_postgres

    with temporary_postgres("postgres") as tmp:
        yield tmp


def create_db(base_dsn: str, name: str) -> str:
    import psycopg2
    from psycopg2 import sql

    admin = psycopg2.connect(base_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    return base_dsn.rsplit("/", 1)[0] + "/" + name


def load(dsn: str, n: int) -> float:
    import psycopg2

    from regional_training.runtime import campaign_db

    conn = psycopg2.connect(dsn)
    campaign_db.migrate(conn, seed=True)
    started = time.perf_counter()
    step = max(1, (n // 4) // READY_GENERATED)
    with conn, conn.cursor() as cur:
        cur.execute(LOAD_SQL, {"n": n, "step": step, "ready": READY_GENERATED, "history": HISTORY_TARGETS})
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.close()
    return time.perf_counter() - started


def selections(conn) -> dict[str, dict]:
    with conn.cursor() as cur:
        cur.execute("SELECT campaign_key FROM campaigns WHERE status = 'ready' ORDER BY campaign_key")
        keys = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT DISTINCT ON (d.campaign_id) d.dataset_id FROM datasets d"
            " JOIN campaigns c USING (campaign_id) WHERE c.status = 'ready'"
            " ORDER BY d.campaign_id, d.created_at DESC, d.dataset_id DESC")
        ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    base = {**PARAMS, "dataset_ids": [], "campaign_keys": []}
    return {
        "ready": base,
        "campaigns": {**base, "campaign_keys": keys},
        "datasets": {**base, "dataset_ids": ids},
        "scan-100": {**base, "dataset_ids": ids[:10], "point_ids": POINTS},
        "scan-1000": {**base, "dataset_ids": ids, "point_ids": POINTS},
    }


def queries() -> dict[str, str]:
    """Today's query and the one before issue 31's risk term (same client path)."""
    from regional_training.runtime.campaign_db import load_sql

    return {"risk": load_sql("queries/place_targets.sql"), "before": BEFORE_RISK_SQL.read_text(encoding="utf-8")}


#: id(connection) -> its server process's CPU reader (psycopg2 connections take no attributes).
SERVER_CPU: dict[int, Callable[[], int | None]] = {}


def backend_cpu_ns(conn) -> Callable[[], int | None]:
    """A reader of the connection's server process's on-CPU time (ns), or of ``None``
    where that process is not readable from here (``--dsn`` on another machine)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    conn.commit()
    path = Path(f"/proc/{pid}/schedstat")

    def read() -> int | None:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    return read


def time_once(conn, params: dict, query: str) -> tuple[float, list[dict], float | None]:
    """(wall ms, rows, CPU ms: server backend + this client thread; None if unreadable)."""
    server_cpu = SERVER_CPU.get(id(conn))
    server_before, client_before = server_cpu() if server_cpu else None, time.thread_time_ns()
    started = time.perf_counter()
    with conn.cursor() as cur:  # as campaign_db.fetch_dicts runs it
        cur.execute(query, params)
        columns = [col.name for col in cur.description or ()]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    conn.commit()
    wall = (time.perf_counter() - started) * 1000
    client = time.thread_time_ns() - client_before
    server_after = server_cpu() if server_cpu else None
    cpu = None if server_before is None or server_after is None else (server_after - server_before + client) / 1e6
    return wall, rows, cpu


def run_interleaved(conns: dict, cases: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Wall and CPU samples per (case, query), and each case's rows; the order of the
    (case, query) pairs rotates by one each round, so no pair always follows another."""
    texts = queries()
    keys = [(case, q) for case in cases for q in texts]
    samples: dict[tuple, list[float]] = {key: [] for key in keys}
    cpu: dict[tuple, list[float]] = {key: [] for key in keys}
    rows_of: dict[tuple, list[dict]] = {}
    for case, q in keys:
        for _ in range(3):  # warm caches and the catalog
            rows_of[(case, q)] = time_once(conns[case[0]], cases[case], texts[q])[1]
    for round_number in range(repeats):
        shift = round_number % len(keys)
        for case, q in keys[shift:] + keys[:shift]:
            wall, _, cpu_ms = time_once(conns[case[0]], cases[case], texts[q])
            samples[(case, q)].append(wall)
            if cpu_ms is not None:
                cpu[(case, q)].append(cpu_ms)
    return samples, rows_of, cpu


def describe(rows: list[dict]) -> str:
    reasons: dict[str, int] = {}
    for r in rows:
        if r["left_out_reason"] and r["rank"] in (None, 1):
            reasons[r["left_out_reason"]] = reasons.get(r["left_out_reason"], 0) + 1
    targets = len({r["priority"] for r in rows})
    placed = sum(1 for r in rows if r["chosen"])
    return f"targets={targets} placed={placed} left_out={reasons} rows={len(rows)}"


def explain(conn, params: dict) -> tuple[str, float, float]:
    from regional_training.runtime.campaign_db import load_sql

    with conn.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + load_sql("queries/place_targets.sql"), params)
        lines = [r[0] for r in cur.fetchall()]
    conn.rollback()
    planning = next(float(x.split()[2]) for x in lines if x.startswith("Planning Time"))
    execution = next(float(x.split()[2]) for x in lines if x.startswith("Execution Time"))
    return "\n".join(lines), planning, execution


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated dataset counts")
    parser.add_argument("--repeats", type=int, default=51)
    parser.add_argument("--dsn", help="an existing server (a database per size is created on it)")
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    import psycopg2

    medians: dict[tuple[int, str], float] = {}
    explains: dict[int, str] = {}
    with server(args.dsn) as base:
        conns, cases = {}, {}
        for n in sizes:
            dsn = create_db(base, f"bench_{n}")
            seconds = load(dsn, n)
            conn = conns[n] = psycopg2.connect(dsn)
            SERVER_CPU[id(conn)] = backend_cpu_ns(conn)
            with conn.cursor() as cur:
                cur.execute("SELECT (SELECT count(*) FROM datasets), (SELECT count(*) FROM dataset_copies),"
                            " pg_size_pretty(pg_database_size(current_database())), version()")
                n_datasets, n_copies, size, version = cur.fetchone()
            conn.commit()
            print(f"== {n_datasets:,} datasets, {n_copies:,} copies ({size}), loaded in {seconds:.1f} s")
            for mode, params in selections(conn).items():
                cases[(n, mode)] = params
        # Interleave the sizes and modes run by run, so load from other processes on the
        # machine hits every case alike (the ratio is what must stay under 2x).
        load_before = os.getloadavg()[0]
        samples, rows_of, cpu = run_interleaved(conns, cases, args.repeats)
        print(f"\n{args.repeats} interleaved runs per case; load average {load_before:.2f} before,"
              f" {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs")
        for (n, mode), params in cases.items():
            exec_ms = sorted(explain(conns[n], params)[2] for _ in range(9))[4]
            xs = samples[((n, mode), "risk")]
            before = statistics.median(samples[((n, mode), "before")])
            medians[(n, mode)] = statistics.median(xs)
            print(f"  {n:>9,} {mode:<10} {describe(rows_of[((n, mode), 'risk')])}"
                  f"  client median {statistics.median(xs):6.2f} ms  p90 {statistics.quantiles(xs, n=10)[-1]:6.2f} ms"
                  f"  (server execution median of 9: {exec_ms:.2f} ms)"
                  f"  before the risk term {before:6.2f} ms: risk/before {statistics.median(xs) / before:.2f}x"
                  " [goal <= 1.2x]")
            if cpu[((n, mode), "risk")] and cpu[((n, mode), "before")]:
                risk_cpu = statistics.median(cpu[((n, mode), "risk")])
                before_cpu = statistics.median(cpu[((n, mode), "before")])
                print(f"  {'':>9} {'':<10} CPU (server + client) median {risk_cpu:6.2f} ms,"
                      f" before the risk term {before_cpu:6.2f} ms: risk/before {risk_cpu / before_cpu:.2f}x"
                      " [goal <= 1.2x]")
        for n in sizes:
            if not args.no_explain:
                explains[n] = explain(conns[n], cases[(n, "ready")])[0]
            conns[n].close()
        print(f"\nPostgreSQL: {version}")
    if len(sizes) >= 2:
        lo, hi = min(sizes), max(sizes)
        for mode in ("ready", "campaigns", "datasets", "scan-100", "scan-1000"):
            ratio = medians[(hi, mode)] / medians[(lo, mode)]
            print(f"ratio {hi:,}/{lo:,} ({mode}): {ratio:.2f}x   "
                  f"[target <= 2x; {hi:,}: {medians[(hi, mode)]:.2f} ms, target <= 20 ms]")
    for n, text in explains.items():
        print(f"\n== EXPLAIN (ANALYZE, BUFFERS), nightly selection, {n:,} datasets\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
