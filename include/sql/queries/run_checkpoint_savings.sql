-- The run's checkpoint carry-overs that copied a checkpoint (V008), each with what its
-- earlier job cost (budget_ledger, V007: actual cost, rate, instances) and the target's
-- instance type: the report's saved GPU-hours and dollars
-- (regional_training.report.report.carry_savings). Read-only.
SELECT c.target_key, c.job_name, c.from_job_name, c.from_region, c.to_region, c.resumed_step,
       c.objects, c.bytes_copied, c.seconds,
       l.actual_cost_usd       AS from_actual_cost_usd,
       l.billing_usd_per_hour  AS from_billing_usd_per_hour,
       l.instance_count        AS from_instance_count,
       r.instance_type
FROM checkpoint_carries AS c
LEFT JOIN budget_ledger AS l ON (l.dag_id, l.run_id, l.job_name) = (c.dag_id, c.run_id, c.from_job_name)
LEFT JOIN training_runs AS r ON (r.dag_id, r.run_id, r.target_key) = (c.dag_id, c.run_id, c.target_key)
WHERE c.dag_id = %(dag_id)s AND c.run_id = %(run_id)s AND c.outcome = 'copied'
ORDER BY c.carried_at, c.job_name;
