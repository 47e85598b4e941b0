-- Whether a job's checkpoints were carried already (checkpoint_carry.recorded): a resumed
-- or retried try that reaches the same create copies nothing more.
SELECT 1
FROM checkpoint_carries
WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s AND job_name = %(job_name)s AND outcome = 'copied';
