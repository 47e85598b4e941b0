-- Every job of every run with a hard cap that still has a job not known to have ended
-- (budget.enforce_hard_caps): the guard adds up the run's actual spend from these.
-- settled_usd: what the job is known to have cost (the ledger's settlement or the
-- collector's recorded actual cost); NULL: ask SageMaker.
SELECT l.dag_id, l.run_id, cap.hard_cap_usd, l.target_key, l.job_name, l.region_code, l.instance_count,
       l.billing_usd_per_hour, l.reserved_at, coalesce(l.actual_cost_usd, tr.actual_cost_usd) AS settled_usd
  FROM budget_hard_caps AS cap
  JOIN budget_ledger AS l ON l.dag_id = cap.dag_id AND l.run_id = cap.run_id
  LEFT JOIN training_runs AS tr
    ON tr.dag_id = l.dag_id AND tr.run_id = l.run_id AND tr.target_key = l.target_key
   AND tr.training_job_name = l.job_name AND tr.actual_cost_usd IS NOT NULL
 WHERE EXISTS (SELECT 1 FROM budget_ledger AS open
                 LEFT JOIN training_runs AS otr
                   ON otr.dag_id = open.dag_id AND otr.run_id = open.run_id AND otr.target_key = open.target_key
                  AND otr.training_job_name = open.job_name AND otr.actual_cost_usd IS NOT NULL
                WHERE open.dag_id = cap.dag_id AND open.run_id = cap.run_id
                  AND open.actual_cost_usd IS NULL AND otr.actual_cost_usd IS NULL)
 ORDER BY l.dag_id, l.run_id, l.reserved_at, l.job_name;
