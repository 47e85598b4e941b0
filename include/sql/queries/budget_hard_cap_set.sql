-- Record the run's hard cap (Param budget_hard_cap_usd) with its launches, so the budget
-- guard, which runs outside the run, knows it. A run's Params do not change: first wins.
INSERT INTO budget_hard_caps (dag_id, run_id, hard_cap_usd)
VALUES (%(dag_id)s, %(run_id)s, %(hard_cap_usd)s)
ON CONFLICT (dag_id, run_id) DO NOTHING;
