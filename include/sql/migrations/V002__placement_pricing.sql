-- Cost- and capacity-aware placement (issue #6): prices, spot observations, reserved
-- capacity and quotas per (region, instance type); optional cross-region transfer cost;
-- planned and actual cost on training_runs. Append-only: later changes go in V003+.

-- List prices per region and SageMaker training instance type, in USD per instance-hour.
CREATE TABLE instance_pricing (
    region_code                 text NOT NULL REFERENCES regions (region_code),
    instance_type               text NOT NULL CHECK (instance_type ~ '^ml\.[a-z0-9-]+\.[0-9]*x?large$'),
    on_demand_usd_per_hour      numeric(12, 4) NOT NULL CHECK (on_demand_usd_per_hour > 0),
    -- Effective hourly price of reserved capacity (training plan / commitment);
    -- 0 when it is prepaid, so using it costs nothing more tonight.
    reserved_usd_per_hour       numeric(12, 4) NOT NULL DEFAULT 0 CHECK (reserved_usd_per_hour >= 0),
    -- Spot jobs are planned at spot price x (1 + allowance): the allowance prices in
    -- the re-run time lost to interruptions (0.25 = expect 25 % more instance-hours).
    spot_interruption_allowance numeric(6, 4) NOT NULL DEFAULT 0.2500
                                CHECK (spot_interruption_allowance >= 0),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, instance_type)
);

-- Recent spot prices; the placement uses the newest observation per (region, type).
-- No observation = spot is not offered there.
CREATE TABLE spot_price_observations (
    region_code     text NOT NULL,
    instance_type   text NOT NULL,
    observed_at     timestamptz NOT NULL,
    usd_per_hour    numeric(12, 4) NOT NULL CHECK (usd_per_hour > 0),
    PRIMARY KEY (region_code, instance_type, observed_at),
    FOREIGN KEY (region_code, instance_type) REFERENCES instance_pricing (region_code, instance_type)
);

-- Capacity the account may use per (region, instance type), in instances.
--   quota_instances:    the account's service quota; every instance the plan places
--                       there counts against it, whatever the purchase option.
--   reserved_instances: instances already paid for or booked; only these may be used
--                       with the 'reserved' option (they count against the quota too).
-- No row = quota 0: the placement never trains where it does not know the quota.
CREATE TABLE instance_capacity (
    region_code        text NOT NULL,
    instance_type      text NOT NULL,
    quota_instances    integer NOT NULL CHECK (quota_instances >= 0),
    reserved_instances integer NOT NULL DEFAULT 0 CHECK (reserved_instances >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_code, instance_type),
    FOREIGN KEY (region_code, instance_type) REFERENCES instance_pricing (region_code, instance_type)
);

-- Optional: USD per GB moved from one region to another. The placement only trains on
-- a copy inside the training region (no cross-region reads), so it never charges this;
-- it is here for replication planning and a later cross-region-read mode.
CREATE TABLE transfer_costs (
    source_region text NOT NULL REFERENCES regions (region_code),
    dest_region   text NOT NULL REFERENCES regions (region_code),
    usd_per_gb    numeric(10, 5) NOT NULL CHECK (usd_per_gb >= 0),
    PRIMARY KEY (source_region, dest_region),
    CHECK (source_region <> dest_region)
);

-- Planned and actual cost per target. planned_* come from the placement row used
-- (after failover: the row actually launched); actual_cost_usd = billable_seconds x
-- instance_count x billing_usd_per_hour / 3600 (see plugins/regional_training/plan/placement.py).
ALTER TABLE training_runs
    ADD COLUMN purchase_option         text CHECK (purchase_option IN ('reserved', 'spot', 'on_demand')),
    ADD COLUMN placement_rank          integer CHECK (placement_rank >= 1),
    ADD COLUMN price_per_instance_hour numeric(12, 4) CHECK (price_per_instance_hour >= 0),
    ADD COLUMN billing_usd_per_hour    numeric(12, 4) CHECK (billing_usd_per_hour >= 0),
    ADD COLUMN planned_cost_usd        numeric(14, 4) CHECK (planned_cost_usd >= 0),
    ADD COLUMN actual_cost_usd         numeric(14, 4) CHECK (actual_cost_usd >= 0);

-- The placement query picks the newest dataset of each selected campaign, and the
-- nightly default selects the 'ready' campaigns: keep both index-only at 1M datasets.
CREATE INDEX datasets_campaign_newest_idx ON datasets (campaign_id, created_at DESC, dataset_id DESC);
CREATE INDEX campaigns_ready_idx ON campaigns (campaign_id) WHERE status = 'ready';
