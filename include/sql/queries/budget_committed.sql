-- The run's committed spend, without the job being launched (budget.reserve_launch):
--   settled job                     its actual cost
--   recorded with an actual cost    training_runs.actual_cost_usd (the collector's, for
--                                   the job of that name: it ended)
--   otherwise (running or pending)  cost so far + remaining expected cost =
--                                   greatest(expected, instances x rate x hours since
--                                   it was reserved): an upper bound of the time billed
SELECT coalesce(sum(coalesce(
           l.actual_cost_usd,
           tr.actual_cost_usd,
           greatest(l.expected_cost_usd,
                    l.instance_count * l.billing_usd_per_hour
                    * extract(epoch FROM greatest(now() - l.reserved_at, interval '0')) / 3600))), 0)
           AS committed_usd,
       count(*) AS jobs
  FROM budget_ledger AS l
  LEFT JOIN training_runs AS tr
    ON tr.dag_id = l.dag_id AND tr.run_id = l.run_id AND tr.target_key = l.target_key
   AND tr.training_job_name = l.job_name AND tr.actual_cost_usd IS NOT NULL
 WHERE l.dag_id = %(dag_id)s AND l.run_id = %(run_id)s AND l.job_name <> %(job_name)s;
