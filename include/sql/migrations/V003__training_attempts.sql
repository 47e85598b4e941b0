-- Which attempt of a target's job a training_runs row describes (1 = the deterministic
-- name, N = "<name>-a<N>" after N-1 failed or stopped attempts), and every placement
-- move a target made when a region had no capacity (issue #6's failover).
ALTER TABLE training_runs
    ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 0);

CREATE TABLE placement_moves (
    dag_id        text NOT NULL,
    run_id        text NOT NULL,
    target_key    text NOT NULL,
    move_number   integer NOT NULL CHECK (move_number >= 1),
    from_region   text NOT NULL REFERENCES regions (region_code),
    to_region     text REFERENCES regions (region_code),
    from_option   text NOT NULL,
    to_option     text,
    error_code    text NOT NULL,
    error_message text NOT NULL,
    moved_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, run_id, target_key, move_number)
);
