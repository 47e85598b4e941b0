-- Parameter scans (issue 17): a job is one (dataset, scan point); its training_runs row
-- records the point, so a run's points can be compared (and a later night's too).
-- Append-only: later changes go in V006+.
--
--   point_id         the point (p01, p02, ...; regional_training.plan.scan numbers them); NULL:
--                    no scan, the row of a plain per-dataset job. The target key ends in
--                    "_<point_id>" (identifiers.TARGET_KEY_PATTERN).
--   point_overrides  the point's overrides of the run's recipe, as the scan Param gave
--                    them: hyperparameters, image_tag, entry_point ({"learning_rate": 0.2}).
--   entry_point      the program the job ran (sagemaker_program), recorded per job next
--                    to hyperparameters_sha256 and training_image (V004).
ALTER TABLE training_runs
    ADD COLUMN point_id        text CHECK (point_id ~ '^p[0-9]{2,4}$'),
    ADD COLUMN point_overrides jsonb CHECK (jsonb_typeof(point_overrides) = 'object'),
    ADD COLUMN entry_point     text CHECK (length(entry_point) BETWEEN 1 AND 256),
    ADD CONSTRAINT training_runs_point_check CHECK (
        (point_id IS NULL) = (point_overrides IS NULL)
        AND (point_id IS NULL OR right(target_key, length(point_id) + 1) = '_' || point_id)
    );

-- The scan's comparison: a run's points of one dataset, side by side.
CREATE INDEX training_runs_point_idx ON training_runs (dag_id, run_id, dataset_id, point_id)
    WHERE point_id IS NOT NULL;
