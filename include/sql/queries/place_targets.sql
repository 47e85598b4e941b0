-- Cost- and capacity-aware placement for one DAG run (issue #6); see docs/placement.md.
--
-- Rule: targets are placed one at a time in priority order (dataset_id ascending, then
-- scan point in the order given: each (dataset, point) is one job, a target). Each
-- takes its cheapest feasible candidate (copy region x purchase option) given what the
-- higher-priority targets already use; a target with no feasible candidate is left out
-- with a reason and uses nothing, and later targets may still fit.
--   candidate  = an 'available' copy of the dataset in an allowed, training-enabled
--                region x a purchase option offered there for the instance type:
--                  reserved   if instance_capacity.reserved_instances > 0
--                  on_demand  always (instance_pricing row present)
--                  spot       if a spot price was observed (the newest one is used)
--                training reads the in-region copy, so no transfer cost applies.
--   expected   = instance_count x estimated_hours x effective price per instance-hour
--   cost         (reserved: reserved_usd_per_hour, may be 0 if prepaid; on_demand: list
--                price; spot: newest spot price x (1 + spot_interruption_allowance)).
--   feasible   = quota used in the region + instance_count <= quota_instances (every
--                option counts; quota_instances = the account's quota minus the instances
--                already in use there, in_use_*, issue 31) and, for reserved, reserved
--                used + instance_count <=
--                reserved_instances; and, with a budget, spent so far + cost <= budget.
--   risk       = the failure model (issue 31): completed jobs (successes) and failover
--                moves away (failures) of this instance type per region x option, counted
--                per UTC day (placement_outcomes_daily), each day weighted
--                0.5 ^ (age of its start / risk_half_life_days), days starting after as_of
--                or 8+ half-lives before it ignored (F, S: weighted failures, successes):
--                  failure_probability = round(F / (F + S + 1), 6)   (0 with no history)
--                  risk_usd = round(max(0, p x (instance_count x (estimated_hours +
--                             failover_delay_hours) x on-demand price - expected cost)), 4)
--                  (a failed launch is assumed to rerun the job at the on-demand price
--                  after the failover delay)
--                  risk_adjusted_cost_usd = expected cost + risk_usd
--                The ranking uses risk_adjusted_cost_usd; the budget counts expected cost.
--   ties       = risk-adjusted cost, then reserved < on_demand < spot, then region_code.
--
-- Parameters (psycopg2 named binds):
--   dataset_ids              bigint[]  explicit targets; empty = the newest dataset of
--                                      each selected campaign (below)
--   campaign_keys            text[]    as select_targets.sql: empty = every 'ready' campaign
--   region_codes             text[]    region allow-list; empty = every training-enabled region
--   instance_type            text      e.g. 'ml.p4d.24xlarge'
--   instance_count           integer   instances per training job (> 0)
--   estimated_hours          numeric   estimated wall-clock hours per job (> 0)
--   budget_usd               numeric   NULL = no budget
--   allowed_purchase_options text[]    subset of {reserved,spot,on_demand}; empty = all
--   point_ids                text[]    a parameter scan's point ids: every selected dataset
--                                      is one job per point; empty = one job per dataset
--                                      (point_id NULL), the plan without a scan
--   risk_half_life_days      numeric   the failure model's half-life (> 0)
--   failover_delay_hours     numeric   hours a failed launch costs before the job runs
--                                      elsewhere (>= 0)
--   as_of                    timestamptz  the model's "now"; NULL = now()
--   learn_from_failures      boolean   false: no failure model (every risk term 0)
--   in_use_regions           text[]    regions with instances of instance_type already in use
--   in_use_instances         integer[] (aligned) how many: by other DAGs, other runs, anyone
--                                      (SageMaker's InProgress jobs); empty = none known
--
-- Result: one row per (target, candidate), ordered by priority, rank (point_id names the
-- target's scan point, NULL without a scan); a target without
-- any candidate gets one row with NULL copy/option columns and rank NULL.
--   rank            1..k per target: the chosen candidate first, then the others that
--                   still fit after the whole plan (cost order), then those that do not
--   chosen          true on exactly one row of each placed target
--   left_out_reason NULL when placed, else no_copy | no_offer | no_capacity | over_budget
--                   (on every row of the target)
--   fits_capacity / fits_budget   whether this candidate would fit if the target moved
--                   to it, given the rest of the plan (failover without asking again)
--   recent_failures, failure_probability, risk_usd, risk_adjusted_cost_usd   the risk
--                   term (recent_failures: failure events within the horizon, unweighted)
WITH RECURSIVE allowed_regions AS (
    SELECT r.region_code, r.output_bucket,
           row_number() OVER (ORDER BY r.region_code)::integer AS ri
      FROM regions AS r
     WHERE r.training_enabled
       AND (cardinality(%(region_codes)s::text[]) = 0
            OR r.region_code = ANY (%(region_codes)s::text[]))
),
offers AS (
    SELECT ar.region_code, ar.ri, ar.output_bucket,
           o.purchase_option, o.option_order,
           o.price_per_instance_hour, o.effective_usd_per_hour, o.billing_usd_per_hour,
           p.on_demand_usd_per_hour,
           CASE WHEN o.purchase_option = 'spot' THEN sp.observed_at END AS spot_price_observed_at,
           -- the room left: SageMaker's quota is per account and region, and jobs
           -- already running there use it (issue 31)
           greatest(0, coalesce(cap.quota_instances, 0) - coalesce(iu.instances, 0)) AS quota_instances,
           coalesce(iu.instances, 0)           AS instances_in_use,
           coalesce(cap.reserved_instances, 0) AS reserved_instances
      FROM allowed_regions AS ar
      JOIN instance_pricing AS p
        ON p.region_code = ar.region_code AND p.instance_type = %(instance_type)s::text
      LEFT JOIN instance_capacity AS cap
        ON cap.region_code = p.region_code AND cap.instance_type = p.instance_type
      LEFT JOIN (SELECT u.region_code, sum(u.instances)::integer AS instances
                   FROM unnest(%(in_use_regions)s::text[], %(in_use_instances)s::integer[])
                        AS u (region_code, instances)
                  GROUP BY u.region_code) AS iu ON iu.region_code = p.region_code
      LEFT JOIN LATERAL (
            SELECT s.usd_per_hour, s.observed_at
              FROM spot_price_observations AS s
             WHERE s.region_code = p.region_code AND s.instance_type = p.instance_type
             ORDER BY s.observed_at DESC
             LIMIT 1) AS sp ON true
     CROSS JOIN LATERAL (VALUES
            ('reserved',  0, p.reserved_usd_per_hour,  p.reserved_usd_per_hour,
                             p.reserved_usd_per_hour,  coalesce(cap.reserved_instances, 0) > 0),
            ('on_demand', 1, p.on_demand_usd_per_hour, p.on_demand_usd_per_hour,
                             p.on_demand_usd_per_hour, true),
            -- SageMaker bills managed spot as on-demand rate x a reduced BillableTimeInSeconds
            ('spot',      2, sp.usd_per_hour, sp.usd_per_hour * (1 + p.spot_interruption_allowance),
                             p.on_demand_usd_per_hour, sp.usd_per_hour IS NOT NULL)
          ) AS o (purchase_option, option_order, price_per_instance_hour,
                  effective_usd_per_hour, billing_usd_per_hour, offered)
     WHERE o.offered
       AND (cardinality(%(allowed_purchase_options)s::text[]) = 0
            OR o.purchase_option = ANY (%(allowed_purchase_options)s::text[]))
),
-- The failure model: placement_outcomes_daily (V006; kept by triggers on training_runs
-- and placement_moves) counts, per UTC day, completed jobs (successes) and moves away
-- (failures) of this instance type per region x option; a day weighs
-- 0.5 ^ (age of its start / half-life). Days after as_of or 8+ half-lives old are ignored.
history_bounds AS (
    SELECT coalesce(%(as_of)s::timestamptz, now()) AS as_of,
           %(risk_half_life_days)s::numeric * 86400 AS half_life_s
),
failure_model AS (
    SELECT d.region_code, d.purchase_option,
           sum(d.failed)::integer AS recent_failures,
           round((sum(w.w * d.failed) / (sum(w.w * (d.failed + d.completed)) + 1))::numeric, 6)
               AS failure_probability
      FROM placement_outcomes_daily AS d
     CROSS JOIN history_bounds AS hb
     CROSS JOIN LATERAL (SELECT (d.day::timestamp AT TIME ZONE 'UTC') AS day_start) AS ds
     -- double precision: the rounding to 6 places makes its error (~1e-15) irrelevant
     CROSS JOIN LATERAL (SELECT power(0.5::float8, date_part('epoch', hb.as_of - ds.day_start)
                                                   / hb.half_life_s::float8) AS w) AS w
     WHERE %(learn_from_failures)s::boolean
       AND d.instance_type = %(instance_type)s::text
       AND ds.day_start <= hb.as_of
       AND ds.day_start > hb.as_of - 8 * hb.half_life_s * interval '1 second'
     GROUP BY d.region_code, d.purchase_option
),
selected AS (
    SELECT d.dataset_id, d.dataset_key, c.campaign_key
      FROM datasets AS d
      JOIN campaigns AS c ON c.campaign_id = d.campaign_id
     WHERE d.dataset_id = ANY (%(dataset_ids)s::bigint[])
    UNION ALL
    SELECT nd.dataset_id, nd.dataset_key, c.campaign_key
      FROM campaigns AS c
     CROSS JOIN LATERAL (
            SELECT d.dataset_id, d.dataset_key
              FROM datasets AS d
             WHERE d.campaign_id = c.campaign_id
             ORDER BY d.created_at DESC, d.dataset_id DESC
             LIMIT 1) AS nd
     WHERE cardinality(%(dataset_ids)s::bigint[]) = 0
       AND (cardinality(%(campaign_keys)s::text[]) = 0
            AND c.status = 'ready'
            OR c.campaign_key = ANY (%(campaign_keys)s::text[]))
),
-- One job per (dataset, scan point); without a scan one point, NULL.
points AS (
    SELECT u.point_id, u.ord
      FROM unnest(%(point_ids)s::text[]) WITH ORDINALITY AS u (point_id, ord)
    UNION ALL
    SELECT NULL::text, 0::bigint WHERE cardinality(%(point_ids)s::text[]) = 0
),
targets AS (
    SELECT s.*, pts.point_id,
           row_number() OVER (ORDER BY s.dataset_id, pts.ord)::integer AS priority
      FROM selected AS s
     CROSS JOIN points AS pts
),
copies AS (
    SELECT t.priority, count(dc.copy_id) AS n_copies
      FROM targets AS t
      LEFT JOIN dataset_copies AS dc
        ON dc.dataset_id = t.dataset_id AND dc.status = 'available'
       AND dc.region_code IN (SELECT region_code FROM allowed_regions)
     GROUP BY t.priority
),
-- Each offer's risk term (the same for every target: computed once per offer).
-- MATERIALIZED: inlined, the planner pulled the failure model into the candidates join
-- and computed the risk arithmetic once per candidate row (~850 at 1M datasets instead
-- of ~9 offers), with a larger join to plan: a fifth more server CPU than the query
-- before the risk term (docs/placement.md, "Benchmark").
risky_offers AS MATERIALIZED (
    SELECT y.*, y.expected_cost_usd + y.risk_usd AS risk_adjusted_cost_usd
      FROM (SELECT o.*, r.expected_cost_usd,
                   coalesce(fm.recent_failures, 0) AS recent_failures,
                   coalesce(fm.failure_probability, 0) AS failure_probability,
                   round(greatest(0, coalesce(fm.failure_probability, 0)
                         * (%(instance_count)s::integer
                            * (%(estimated_hours)s::numeric + %(failover_delay_hours)s::numeric)
                            * o.on_demand_usd_per_hour - r.expected_cost_usd)), 4) AS risk_usd
              FROM offers AS o
              LEFT JOIN failure_model AS fm
                ON fm.region_code = o.region_code AND fm.purchase_option = o.purchase_option
             CROSS JOIN LATERAL (SELECT %(instance_count)s::integer * %(estimated_hours)s::numeric
                                        * o.effective_usd_per_hour AS expected_cost_usd) AS r) AS y
),
candidates AS MATERIALIZED (
    SELECT x.*,
           -- the target's preference order: risk-adjusted cost, then option, then region
           row_number() OVER (PARTITION BY x.priority
                              ORDER BY x.risk_adjusted_cost_usd, x.option_order, x.region_code)::integer
               AS preference
      FROM (SELECT t.priority, dc.copy_id, dc.s3_uri, o.*
              FROM targets AS t
              JOIN dataset_copies AS dc
                ON dc.dataset_id = t.dataset_id AND dc.status = 'available'
              JOIN risky_offers AS o ON o.region_code = dc.region_code) AS x
),
-- Each target's candidates as parallel arrays (aligned: one aggregate pass), so a step
-- of the recursion reads one short row instead of scanning every candidate.
per_target AS MATERIALIZED (
    SELECT c.priority,
           array_agg(c.preference) AS preferences,
           array_agg(c.copy_id) AS copy_ids,
           array_agg(c.option_order) AS options,
           array_agg(c.ri) AS ris,
           array_agg(c.expected_cost_usd) AS costs,
           array_agg(c.quota_instances) AS quotas,
           array_agg(c.reserved_instances) AS reserveds
      FROM candidates AS c
     GROUP BY c.priority
),
-- Sequential greedy: step k decides target k from the capacity (per region ordinal)
-- and money used by targets 1..k-1. option 0 = reserved (see offers.option_order).
plan (priority, quota_used, reserved_used, spent, copy_id, option_order, ri,
      expected_cost_usd, verdict) AS (
    SELECT 0,
           array_fill(0, ARRAY[(SELECT count(*) FROM allowed_regions)::integer]),
           array_fill(0, ARRAY[(SELECT count(*) FROM allowed_regions)::integer]),
           0::numeric, NULL::bigint, NULL::integer, NULL::integer, NULL::numeric, NULL::text
    UNION ALL
    SELECT p.priority + 1,
           CASE WHEN pick.verdict = 'placed'
                THEN p.quota_used[:pick.ri - 1]
                     || (p.quota_used[pick.ri] + %(instance_count)s::integer)
                     || p.quota_used[pick.ri + 1:]
                ELSE p.quota_used END,
           CASE WHEN pick.verdict = 'placed' AND pick.option_order = 0
                THEN p.reserved_used[:pick.ri - 1]
                     || (p.reserved_used[pick.ri] + %(instance_count)s::integer)
                     || p.reserved_used[pick.ri + 1:]
                ELSE p.reserved_used END,
           p.spent + CASE WHEN pick.verdict = 'placed' THEN pick.cost ELSE 0 END,
           CASE WHEN pick.verdict = 'placed' THEN pick.copy_id END,
           CASE WHEN pick.verdict = 'placed' THEN pick.option_order END,
           CASE WHEN pick.verdict = 'placed' THEN pick.ri END,
           CASE WHEN pick.verdict = 'placed' THEN pick.cost END,
           pick.verdict
      FROM plan AS p
      LEFT JOIN LATERAL (
            SELECT u.copy_id, u.option_order, u.ri, u.cost,
                   CASE WHEN NOT f.cap_ok THEN 'no_capacity'
                        WHEN NOT f.budget_ok THEN 'over_budget'
                        ELSE 'placed' END AS verdict
              FROM per_target AS pt
             CROSS JOIN LATERAL unnest(pt.preferences, pt.copy_ids, pt.options, pt.ris, pt.costs,
                                       pt.quotas, pt.reserveds)
                   AS u (preference, copy_id, option_order, ri, cost, quota, reserved)
             CROSS JOIN LATERAL (SELECT
                    p.quota_used[u.ri] + %(instance_count)s::integer <= u.quota
                    AND (u.option_order <> 0
                         OR p.reserved_used[u.ri] + %(instance_count)s::integer <= u.reserved) AS cap_ok,
                    %(budget_usd)s::numeric IS NULL
                    OR p.spent + u.cost <= %(budget_usd)s::numeric AS budget_ok
                  ) AS f
             WHERE pt.priority = p.priority + 1
             ORDER BY (f.cap_ok AND f.budget_ok) DESC, f.cap_ok DESC, u.preference
             LIMIT 1) AS pick ON true
     WHERE p.priority < (SELECT count(*) FROM targets)
),
final AS (
    SELECT quota_used, reserved_used, spent FROM plan ORDER BY priority DESC LIMIT 1
),
decided AS (
    SELECT t.*, pl.copy_id AS chosen_copy_id, pl.option_order AS chosen_option,
           pl.ri AS chosen_ri, pl.expected_cost_usd AS chosen_cost, pl.spent AS cumulative_cost_usd,
           CASE WHEN pl.verdict = 'placed' THEN NULL
                WHEN cp.n_copies = 0 THEN 'no_copy'
                WHEN pl.verdict IS NULL THEN 'no_offer'
                ELSE pl.verdict END AS left_out_reason
      FROM targets AS t
      JOIN plan AS pl ON pl.priority = t.priority
      JOIN copies AS cp ON cp.priority = t.priority
),
rows AS (
    SELECT d.priority, d.dataset_id, d.dataset_key, d.campaign_key, d.point_id,
           c.copy_id, c.region_code, c.s3_uri, c.output_bucket, c.purchase_option,
           c.option_order, c.price_per_instance_hour, c.effective_usd_per_hour,
           c.billing_usd_per_hour, c.spot_price_observed_at,
           c.quota_instances, c.instances_in_use, c.reserved_instances, c.expected_cost_usd,
           c.recent_failures, c.failure_probability, c.risk_usd, c.risk_adjusted_cost_usd,
           coalesce(c.copy_id = d.chosen_copy_id AND c.option_order = d.chosen_option,
                    false) AS chosen,
           -- would this candidate fit if the target moved to it (its own use released)?
           c.copy_id IS NOT NULL
           AND fin.quota_used[c.ri]
               - CASE WHEN c.ri = d.chosen_ri THEN %(instance_count)s::integer ELSE 0 END
               + %(instance_count)s::integer <= c.quota_instances
           AND (c.purchase_option <> 'reserved'
                OR fin.reserved_used[c.ri]
                   - CASE WHEN c.ri = d.chosen_ri AND d.chosen_option = 0
                          THEN %(instance_count)s::integer ELSE 0 END
                   + %(instance_count)s::integer <= c.reserved_instances) AS fits_capacity,
           c.copy_id IS NOT NULL
           AND (%(budget_usd)s::numeric IS NULL
                OR fin.spent - coalesce(d.chosen_cost, 0) + c.expected_cost_usd
                   <= %(budget_usd)s::numeric) AS fits_budget,
           d.left_out_reason, d.cumulative_cost_usd, fin.spent AS plan_total_usd
      FROM decided AS d
     CROSS JOIN final AS fin
      LEFT JOIN candidates AS c ON c.priority = d.priority
)
SELECT priority, dataset_id, dataset_key, campaign_key, point_id,
       copy_id, region_code, s3_uri, output_bucket, purchase_option,
       %(instance_type)s::text AS instance_type,
       %(instance_count)s::integer AS instance_count,
       %(estimated_hours)s::numeric AS estimated_hours,
       price_per_instance_hour, effective_usd_per_hour, billing_usd_per_hour,
       spot_price_observed_at, quota_instances, instances_in_use, reserved_instances,
       expected_cost_usd,
       recent_failures, failure_probability, risk_usd, risk_adjusted_cost_usd,
       CASE WHEN copy_id IS NOT NULL THEN
            row_number() OVER (PARTITION BY priority
                               ORDER BY chosen DESC, (fits_capacity AND fits_budget) DESC,
                                        risk_adjusted_cost_usd, option_order, region_code)
       END::integer AS rank,
       chosen, fits_capacity, fits_budget, left_out_reason,
       cumulative_cost_usd, plan_total_usd
  FROM rows
 ORDER BY priority, rank NULLS LAST;
