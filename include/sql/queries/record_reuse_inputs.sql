-- After a target's row is UPSERTed (upsert_training_run.sql): record the inputs that
-- make it findable by find_reusable.sql. Idempotent (a re-collected row is re-stamped).
UPDATE training_runs
SET training_image  = %(training_image)s,
    dataset_version = %(dataset_version)s,
    reuse_key       = %(reuse_key)s,
    updated_at      = now()
WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s AND target_key = %(target_key)s;
