-- The campaign view's run list (plugins/campaign_view): the newest runs first, one row
-- per DAG run with its targets' outcome and cost. Read-only. A reused target (an identical
-- earlier job's model, copied: status 'Reused') counts as completed, and is counted apart too.
SELECT
    r.dag_id,
    r.run_id,
    min(r.training_start_time)                         AS started,
    max(r.training_end_time)                           AS ended,
    max(r.recorded_at)                                 AS recorded_at,
    count(*)                                           AS targets,
    count(*) FILTER (WHERE r.status IN ('Completed', 'Reused')) AS completed,
    count(*) FILTER (WHERE r.status = 'Reused')        AS reused,
    string_agg(DISTINCT r.region_code, ', ' ORDER BY r.region_code) AS regions,
    sum(r.planned_cost_usd)                            AS planned_cost_usd,
    sum(r.actual_cost_usd)                             AS actual_cost_usd
FROM training_runs AS r
GROUP BY r.dag_id, r.run_id
ORDER BY max(r.recorded_at) DESC, r.dag_id, r.run_id
LIMIT %(limit)s;
