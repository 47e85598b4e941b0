-- Record one target's result: a trained job's (the collector) or a reused one's
-- (status 'Reused', reuse.reused_row). The one statement that writes a training_runs row.
-- training_image, dataset_version and reuse_key are the inputs that make a Completed row
-- findable by find_reusable.sql (NULL: never reused); reused_from_* point a 'Reused' row
-- at the row whose job made its model (NULL otherwise). point_id, point_overrides and
-- entry_point: the job's parameter-scan point and program (V005; NULL point: no scan).
-- Re-running or clearing a region replaces its row.
-- failure_reason: a Stopped job that the run's budget hard cap stopped (budget_cap_stops,
-- the budget_guard DAG) says so with the figures, before SageMaker's words: SageMaker
-- only knows that StopTrainingJob was called, not by whom or why.
INSERT INTO training_runs (
    dag_id, run_id, target_key, region_code, dataset_id, copy_id,
    training_job_name, training_job_arn, attempt, status, failure_reason,
    hyperparameters_sha256, instance_type, instance_count,
    training_start_time, training_end_time, billable_seconds, metrics,
    source_artifact_uri, model_artifact_uri,
    purchase_option, placement_rank, price_per_instance_hour, billing_usd_per_hour,
    planned_cost_usd, actual_cost_usd,
    training_image, dataset_version, reuse_key,
    reused_from_dag_id, reused_from_run_id, reused_from_target_key,
    point_id, point_overrides, entry_point
) VALUES (
    %(dag_id)s, %(run_id)s, %(target_key)s, %(region_code)s, %(dataset_id)s, %(copy_id)s,
    %(training_job_name)s, %(training_job_arn)s, %(attempt)s, %(status)s,
    coalesce((SELECT format('stopped by the run''s budget hard cap of %%s USD (spent %%s USD, %%s USD by the guard''s '
                            'next look); SageMaker: %%s', s.hard_cap_usd, s.actual_usd, s.projected_usd,
                            %(failure_reason)s::text)
                FROM budget_cap_stops AS s
               WHERE %(status)s::text = 'Stopped' AND s.dag_id = %(dag_id)s AND s.run_id = %(run_id)s
                 AND s.job_name = %(training_job_name)s::text),
             %(failure_reason)s::text),
    %(hyperparameters_sha256)s, %(instance_type)s, %(instance_count)s,
    %(training_start_time)s, %(training_end_time)s, %(billable_seconds)s, %(metrics)s,
    %(source_artifact_uri)s, %(model_artifact_uri)s,
    %(purchase_option)s, %(placement_rank)s, %(price_per_instance_hour)s, %(billing_usd_per_hour)s,
    %(planned_cost_usd)s, %(actual_cost_usd)s,
    %(training_image)s, %(dataset_version)s, %(reuse_key)s,
    %(reused_from_dag_id)s, %(reused_from_run_id)s, %(reused_from_target_key)s,
    %(point_id)s, %(point_overrides)s::jsonb, %(entry_point)s
)
ON CONFLICT (dag_id, run_id, target_key) DO UPDATE SET
    region_code            = EXCLUDED.region_code,
    dataset_id             = EXCLUDED.dataset_id,
    copy_id                = EXCLUDED.copy_id,
    training_job_name      = EXCLUDED.training_job_name,
    training_job_arn       = EXCLUDED.training_job_arn,
    attempt                = EXCLUDED.attempt,
    status                 = EXCLUDED.status,
    failure_reason         = EXCLUDED.failure_reason,
    hyperparameters_sha256 = EXCLUDED.hyperparameters_sha256,
    instance_type          = EXCLUDED.instance_type,
    instance_count         = EXCLUDED.instance_count,
    training_start_time    = EXCLUDED.training_start_time,
    training_end_time      = EXCLUDED.training_end_time,
    billable_seconds       = EXCLUDED.billable_seconds,
    metrics                = EXCLUDED.metrics,
    source_artifact_uri    = EXCLUDED.source_artifact_uri,
    model_artifact_uri     = EXCLUDED.model_artifact_uri,
    purchase_option        = EXCLUDED.purchase_option,
    placement_rank         = EXCLUDED.placement_rank,
    price_per_instance_hour = EXCLUDED.price_per_instance_hour,
    billing_usd_per_hour   = EXCLUDED.billing_usd_per_hour,
    planned_cost_usd       = EXCLUDED.planned_cost_usd,
    actual_cost_usd        = EXCLUDED.actual_cost_usd,
    training_image         = EXCLUDED.training_image,
    dataset_version        = EXCLUDED.dataset_version,
    reuse_key              = EXCLUDED.reuse_key,
    reused_from_dag_id     = EXCLUDED.reused_from_dag_id,
    reused_from_run_id     = EXCLUDED.reused_from_run_id,
    reused_from_target_key = EXCLUDED.reused_from_target_key,
    point_id               = EXCLUDED.point_id,
    point_overrides        = EXCLUDED.point_overrides,
    entry_point            = EXCLUDED.entry_point,
    updated_at             = now();
