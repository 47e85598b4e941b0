-- One carry-over per job about to be created (checkpoint_carry.record). A try that
-- copied again before its create (the first try died between copy and create) replaces
-- the figures with its own: the objects are the same keys, overwritten.
INSERT INTO checkpoint_carries (dag_id, run_id, target_key, job_name, from_job_name, from_region, to_region,
                                outcome, reason, source_uri, dest_uri, objects, bytes_copied, seconds,
                                resumed_step)
VALUES (%(dag_id)s, %(run_id)s, %(target_key)s, %(job_name)s, %(from_job_name)s, %(from_region)s,
        %(to_region)s, %(outcome)s, %(reason)s, %(source_uri)s, %(dest_uri)s, %(objects)s, %(bytes_copied)s,
        %(seconds)s, %(resumed_step)s)
ON CONFLICT (dag_id, run_id, job_name) DO UPDATE
SET from_job_name = EXCLUDED.from_job_name, from_region = EXCLUDED.from_region, outcome = EXCLUDED.outcome,
    reason = EXCLUDED.reason, source_uri = EXCLUDED.source_uri, objects = EXCLUDED.objects,
    bytes_copied = EXCLUDED.bytes_copied, seconds = EXCLUDED.seconds, resumed_step = EXCLUDED.resumed_step,
    carried_at = now();
