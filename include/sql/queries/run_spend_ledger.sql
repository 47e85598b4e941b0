-- The run's spend over time for its report (regional_training.report.report.spend_chart): every
-- job its budget ledger reserved (V007), with the expected cost committed at reservation
-- and the actual cost known at settlement. Read-only.
SELECT job_name, target_key, reserved_at, expected_cost_usd, settled_at, actual_cost_usd
FROM budget_ledger
WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s
ORDER BY reserved_at, job_name;
