-- Serialise one run's budget decisions (budget.reserve_launch): held to the end of the
-- transaction, so two targets' launches never both fit the same remaining budget.
SELECT pg_advisory_xact_lock(hashtextextended(%(dag_id)s || '/' || %(run_id)s, 31));
