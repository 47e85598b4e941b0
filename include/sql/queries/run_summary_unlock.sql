-- Releases run_summary_lock.sql's lock (closing the session releases it too).
SELECT pg_advisory_unlock(hashtextextended('mrt-run-summary:' || %(dag_id)s || '/' || %(run_id)s, 0)) AS unlocked;
