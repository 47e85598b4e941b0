-- Every target's recorded result for one DAG run (the run summary reads these).
SELECT target_key, region_code, training_job_name, status, failure_reason,
       billable_seconds, metrics, model_artifact_uri,
       EXTRACT(EPOCH FROM (training_end_time - training_start_time))::float AS duration_seconds
  FROM training_runs
 WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s
 ORDER BY region_code, target_key;
