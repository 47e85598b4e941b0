-- One run's recorded targets, as the summary and the report read them (regional_training.record.run_summary):
-- the columns of a collected row (collection.collect, reuse.reused_row) and the target's
-- failover moves in order. What is recorded is the one source of the summary, so a target
-- recorded after summarize ran (a cleared training task) appears in the re-rendered report.
SELECT
    r.dag_id, r.run_id, r.target_key, r.region_code, r.dataset_id, r.copy_id,
    r.training_job_name, r.training_job_arn, r.attempt, r.status, r.failure_reason,
    r.hyperparameters_sha256, r.instance_type, r.instance_count,
    r.training_start_time, r.training_end_time, r.billable_seconds, r.metrics,
    r.source_artifact_uri, r.model_artifact_uri,
    r.purchase_option, r.placement_rank, r.price_per_instance_hour, r.billing_usd_per_hour,
    r.planned_cost_usd, r.actual_cost_usd,
    r.reused_from_dag_id, r.reused_from_run_id, r.reused_from_target_key,
    r.point_id, r.point_overrides, r.entry_point,
    coalesce((
        SELECT json_agg(json_build_object(
                   'move_number', m.move_number, 'from_region', m.from_region, 'to_region', m.to_region,
                   'from_option', m.from_option, 'to_option', m.to_option, 'error_code', m.error_code,
                   'error_message', m.error_message, 'moved_at', m.moved_at) ORDER BY m.move_number)
        FROM placement_moves AS m
        WHERE (m.dag_id, m.run_id, m.target_key) = (r.dag_id, r.run_id, r.target_key)
    ), '[]'::json) AS moves
FROM training_runs AS r
WHERE r.dag_id = %(dag_id)s AND r.run_id = %(run_id)s
ORDER BY r.region_code, r.target_key;
