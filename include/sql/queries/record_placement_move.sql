-- Record one failover move of a target (issue #6). A re-run of the collector records
-- the same moves again: the key makes that a no-op, never a second row.
INSERT INTO placement_moves (
    dag_id, run_id, target_key, move_number, from_region, to_region,
    from_option, to_option, error_code, error_message
) VALUES (
    %(dag_id)s, %(run_id)s, %(target_key)s, %(move_number)s, %(from_region)s, %(to_region)s,
    %(from_option)s, %(to_option)s, %(error_code)s, %(error_message)s
)
ON CONFLICT (dag_id, run_id, target_key, move_number) DO NOTHING;
