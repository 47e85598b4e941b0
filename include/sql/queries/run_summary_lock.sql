-- One writer of a run's summary and report at a time (regional_training.record.run_summary): a
-- session lock, held while the rows are read and the files written, so the last writer
-- read every row committed before it (a recorder commits its row before it re-renders).
SELECT pg_advisory_lock(hashtextextended('mrt-run-summary:' || %(dag_id)s || '/' || %(run_id)s, 0)) AS locked;
