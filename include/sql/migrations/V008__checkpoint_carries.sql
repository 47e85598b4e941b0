-- Checkpoint carry-over (issue 31): before a target's job is created in a region other
-- than its previous job's, that job's checkpoints (CheckpointConfig.S3Uri) are copied
-- server-side to the new job's checkpoint prefix, so SageMaker downloads them to
-- /opt/ml/checkpoints and the entry point resumes instead of starting at step 0
-- (plugins/regional_training/record/checkpoint_carry.py; docs/placement.md "Checkpoint
-- carry-over"). One row per job created after a move or new attempt that had an earlier
-- job to carry from, whatever the outcome. Append-only: later changes go in V009+.
CREATE TABLE checkpoint_carries (
    dag_id         text NOT NULL,
    run_id         text NOT NULL,
    target_key     text NOT NULL,
    -- the job about to be created, and the earlier job whose checkpoints it gets
    job_name       text NOT NULL,
    from_job_name  text NOT NULL,
    from_region    text NOT NULL REFERENCES regions (region_code),
    to_region      text NOT NULL REFERENCES regions (region_code),
    -- copied: the objects were copied; empty: the earlier job left no checkpoint;
    -- incompatible: another image, hyperparameter hash or model (reason says which): never used;
    -- off: the run's carry_checkpoints Param is off
    outcome        text NOT NULL CHECK (outcome IN ('copied', 'empty', 'incompatible', 'off')),
    reason         text,
    source_uri     text NOT NULL,
    dest_uri       text NOT NULL,
    objects        integer NOT NULL DEFAULT 0 CHECK (objects >= 0),
    bytes_copied   bigint NOT NULL DEFAULT 0 CHECK (bytes_copied >= 0),
    seconds        numeric(10, 3) NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    -- the newest checkpoint's step (its TF index file names ckpt-<step>): where the new
    -- job resumes; NULL when nothing was copied or no index file names a step
    resumed_step   bigint CHECK (resumed_step >= 0),
    carried_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, run_id, job_name)
);
