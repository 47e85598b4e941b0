-- Reserve a job's expected cost before it is created. The key is the job name: a retry
-- of the same create (lost response, a resumed try) reserves nothing more.
INSERT INTO budget_ledger (dag_id, run_id, target_key, job_name, region_code, purchase_option,
                           instance_count, billing_usd_per_hour, expected_cost_usd)
VALUES (%(dag_id)s, %(run_id)s, %(target_key)s, %(job_name)s, %(region_code)s, %(purchase_option)s,
        %(instance_count)s, %(billing_usd_per_hour)s, %(expected_cost_usd)s)
ON CONFLICT (dag_id, run_id, job_name) DO NOTHING;
