-- The figures of a refresh that applied (same transaction as its changes).
UPDATE limits_refreshes
   SET finished_at = now(), rows_changed = %(rows_changed)s, rows_kept_manual = %(rows_kept_manual)s
 WHERE refresh_id = %(refresh_id)s;
