-- The campaign view's charts: per dataset and region, each night's final accuracy,
-- images/sec and cost, for the runs listed (the newest %(limit)s runs). Read-only.
WITH recent AS (
    SELECT dag_id, run_id
    FROM training_runs
    GROUP BY dag_id, run_id
    ORDER BY max(recorded_at) DESC, dag_id, run_id
    LIMIT %(limit)s
)
SELECT
    d.dataset_key,
    r.region_code,
    r.dag_id,
    r.run_id,
    coalesce(r.training_start_time, r.recorded_at)            AS night,
    r.status,
    (r.metrics ->> 'train:accuracy')::double precision         AS accuracy,
    (r.metrics ->> 'train:images_per_sec')::double precision   AS images_per_sec,
    r.actual_cost_usd,
    r.planned_cost_usd
FROM training_runs AS r
JOIN recent USING (dag_id, run_id)
JOIN datasets AS d ON d.dataset_id = r.dataset_id
ORDER BY d.dataset_key, r.region_code, night;
