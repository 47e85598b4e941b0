-- Cached identical work (issue #15): a target whose inputs match a completed, recorded
-- job within the run's window (Param reuse_completed_within) is not trained again; its
-- row says status 'Reused' and points at the row of the job that made the model.
-- Append-only: later changes go in V005+.
--
-- The inputs that decide "identical" are recorded on every row (NULL on rows written
-- before this migration, which are therefore never reused):
--   training_image   region-independent image reference: "<repository>:<tag>" or
--                    "<repository>@sha256:<digest>" (the regional registry host is not part
--                    of it, so a model trained in one region can serve the same target
--                    placed in another only if the copy, and so the region, matches too);
--   dataset_version  the copy's content version when it was planned (its synced_at, ISO
--                    8601), so a re-synced copy never hits the cache;
--   reuse_key        SHA-256 of every input above plus dataset, copy, hyperparameter hash
--                    and instance recipe (plugins/regional_training/plan/reuse.py, ReuseKey):
--                    the indexed lookup; find_reusable.sql re-checks each column too.
ALTER TABLE training_runs
    ADD COLUMN training_image         text CHECK (training_image ~ '^[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$'),
    ADD COLUMN dataset_version        text CHECK (length(dataset_version) BETWEEN 1 AND 64),
    ADD COLUMN reuse_key              text CHECK (reuse_key ~ '^[0-9a-f]{64}$'),
    -- A 'Reused' row's pointer to the row whose job made the model (never to another
    -- 'Reused' row: the window counts from when the model was trained).
    ADD COLUMN reused_from_dag_id     text,
    ADD COLUMN reused_from_run_id     text,
    ADD COLUMN reused_from_target_key text,
    ADD CONSTRAINT training_runs_reused_from_fk
        FOREIGN KEY (reused_from_dag_id, reused_from_run_id, reused_from_target_key)
        REFERENCES training_runs (dag_id, run_id, target_key),
    ADD CONSTRAINT training_runs_reused_pointer_check CHECK (
        (status = 'Reused') = (reused_from_run_id IS NOT NULL)
        AND (reused_from_run_id IS NULL) = (reused_from_dag_id IS NULL)
        AND (reused_from_run_id IS NULL) = (reused_from_target_key IS NULL)
    );

-- find_reusable.sql: newest completed job with this key, index-only on the window bound.
CREATE INDEX training_runs_reuse_idx ON training_runs (reuse_key, training_end_time DESC)
    WHERE status = 'Completed' AND reuse_key IS NOT NULL;
