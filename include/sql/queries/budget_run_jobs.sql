-- The jobs a run has reserved (budget_ledger): its own, which capacity.in_use_by_region
-- does not count as another's use of the quota when the run is planned again.
SELECT job_name FROM budget_ledger WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s ORDER BY job_name;
