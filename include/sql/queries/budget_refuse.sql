-- Record a launch the budget refused, with its figures (once per job name).
INSERT INTO budget_refusals (dag_id, run_id, target_key, job_name, region_code, purchase_option,
                             budget_usd, committed_usd, launch_usd)
VALUES (%(dag_id)s, %(run_id)s, %(target_key)s, %(job_name)s, %(region_code)s, %(purchase_option)s,
        %(budget_usd)s, %(committed_usd)s, %(launch_usd)s)
ON CONFLICT (dag_id, run_id, target_key, job_name) DO NOTHING;
