-- The newest completed, recorded job whose inputs are identical to this target's and
-- which ended within the window [not_before, as_of]; no row = train.
-- reuse_key selects through training_runs_reuse_idx; every input is re-checked by
-- column so a row can only match on equal inputs. 'Reused' rows are never a source
-- (status = 'Completed'): the window counts from when the model was actually trained.
-- The run asking is excluded: a cleared target never "reuses" its own earlier try.
-- The copy must still hold the same content version and be available.
SELECT tr.dag_id, tr.run_id, tr.target_key, tr.region_code, tr.dataset_id, tr.copy_id,
       tr.training_job_name, tr.training_job_arn, tr.hyperparameters_sha256, tr.training_image,
       tr.dataset_version, tr.instance_type, tr.instance_count, tr.training_end_time,
       tr.metrics, tr.model_artifact_uri, tr.actual_cost_usd, tr.reuse_key
FROM training_runs AS tr
JOIN dataset_copies AS c ON c.copy_id = tr.copy_id
WHERE tr.reuse_key = %(reuse_key)s
  AND tr.status = 'Completed'
  AND tr.model_artifact_uri IS NOT NULL
  AND tr.dataset_id = %(dataset_id)s
  AND tr.copy_id = %(copy_id)s
  AND tr.dataset_version = %(dataset_version)s
  AND tr.hyperparameters_sha256 = %(hyperparameters_sha256)s
  AND tr.training_image = %(training_image)s
  AND tr.instance_type = %(instance_type)s
  AND tr.instance_count = %(instance_count)s
  AND tr.training_end_time >= %(not_before)s
  AND tr.training_end_time <= %(as_of)s
  AND NOT (tr.dag_id = %(dag_id)s AND tr.run_id = %(run_id)s)
  AND c.status = 'available'
  AND to_char(c.synced_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') = %(dataset_version)s
ORDER BY tr.training_end_time DESC, tr.run_id DESC
LIMIT 1;
