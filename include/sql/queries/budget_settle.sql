-- Settle the target's earlier jobs: a target's task launches only after its previous job
-- ended, so every unsettled row of the target but the job being launched has ended.
-- Its cost: the billed cost when known (the job's description: settled_usd_by_job, a
-- jsonb {job name: USD}); otherwise the most it could have billed, from its reservation
-- until now (a create refused for capacity made no job: seconds, ~0 USD).
UPDATE budget_ledger AS l
   SET actual_cost_usd = coalesce(
           (%(settled_usd_by_job)s::jsonb ->> l.job_name)::numeric,
           round(l.instance_count * l.billing_usd_per_hour
                 * extract(epoch FROM greatest(now() - l.reserved_at, interval '0')) / 3600, 4)),
       settled_at = now()
 WHERE l.dag_id = %(dag_id)s AND l.run_id = %(run_id)s AND l.target_key = %(target_key)s
   AND l.job_name <> %(job_name)s AND l.actual_cost_usd IS NULL;
