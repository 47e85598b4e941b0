-- A job the hard cap stopped, with the figures (a guard that runs again records nothing new).
INSERT INTO budget_cap_stops (dag_id, run_id, target_key, job_name, region_code, hard_cap_usd, actual_usd,
                              projected_usd)
VALUES (%(dag_id)s, %(run_id)s, %(target_key)s, %(job_name)s, %(region_code)s, %(hard_cap_usd)s, %(actual_usd)s,
        %(projected_usd)s)
ON CONFLICT (dag_id, run_id, job_name) DO NOTHING;
