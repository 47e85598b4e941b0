-- A run whose hard cap stopped a job launches nothing more (budget.reserve_launch).
SELECT hard_cap_usd, count(*) AS stopped
  FROM budget_cap_stops
 WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s
 GROUP BY hard_cap_usd;
