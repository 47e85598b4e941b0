-- Live capacity and prices, and a hard cap on spend (issue 31, items 2 and 4).
-- See docs/placement.md "Live quotas and prices" and "Hard cap". Append-only: later
-- changes go in V010+.
--
-- 1. Quotas (Service Quotas) and on-demand prices (the Price List API) are refreshed
--    into instance_capacity / instance_pricing by regional_training.plan.live_limits. A row
--    says where its figure came from; a row typed by a person stays possible and is
--    never overwritten by a refresh while it is marked manual_wins.
ALTER TABLE instance_capacity
    ADD COLUMN source      text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'service_quotas')),
    ADD COLUMN manual_wins boolean NOT NULL DEFAULT false,
    -- the Service Quotas QuotaCode the figure was read from (GetServiceQuota asks by it)
    ADD COLUMN quota_code  text;

ALTER TABLE instance_pricing
    ADD COLUMN source      text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'price_list')),
    ADD COLUMN manual_wins boolean NOT NULL DEFAULT false,
    -- the Price List product (SKU) the on-demand price was read from
    ADD COLUMN price_sku   text;

-- One row per refresh attempt: what it changed, or why it changed nothing.
CREATE TABLE limits_refreshes (
    refresh_id       bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('quotas', 'prices')),
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL DEFAULT now(),
    outcome          text NOT NULL CHECK (outcome IN ('applied', 'failed')),
    rows_changed     integer NOT NULL DEFAULT 0 CHECK (rows_changed >= 0),
    rows_kept_manual integer NOT NULL DEFAULT 0 CHECK (rows_kept_manual >= 0),
    error            text,
    CHECK ((outcome = 'failed') = (error IS NOT NULL))
);

-- What a change replaced, and when: the old row as it was (valid_from = its
-- updated_at), kept by the triggers below for every UPDATE or DELETE that changes a
-- figure, whoever makes it (a refresh sets mrt.limits_refresh_id in its transaction, so
-- its replacements name it; a person's edit has none).
CREATE TABLE instance_capacity_history (
    region_code        text NOT NULL,
    instance_type      text NOT NULL,
    quota_instances    integer NOT NULL,
    reserved_instances integer NOT NULL,
    source             text NOT NULL,
    manual_wins        boolean NOT NULL,
    quota_code         text,
    valid_from         timestamptz NOT NULL,
    replaced_at        timestamptz NOT NULL DEFAULT now(),
    replaced_by        text NOT NULL,  -- the new row's source, or 'deleted'
    refresh_id         bigint REFERENCES limits_refreshes (refresh_id)
);
CREATE INDEX instance_capacity_history_key_idx
    ON instance_capacity_history (region_code, instance_type, replaced_at DESC);

CREATE TABLE instance_pricing_history (
    region_code                 text NOT NULL,
    instance_type               text NOT NULL,
    on_demand_usd_per_hour      numeric(12, 4) NOT NULL,
    reserved_usd_per_hour       numeric(12, 4) NOT NULL,
    spot_interruption_allowance numeric(6, 4) NOT NULL,
    source                      text NOT NULL,
    manual_wins                 boolean NOT NULL,
    price_sku                   text,
    valid_from                  timestamptz NOT NULL,
    replaced_at                 timestamptz NOT NULL DEFAULT now(),
    replaced_by                 text NOT NULL,
    refresh_id                  bigint REFERENCES limits_refreshes (refresh_id)
);
CREATE INDEX instance_pricing_history_key_idx
    ON instance_pricing_history (region_code, instance_type, replaced_at DESC);

CREATE FUNCTION limits_refresh_id() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('mrt.limits_refresh_id', true), '')::bigint
$$;

CREATE FUNCTION instance_capacity_keep_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.quota_instances, OLD.reserved_instances, OLD.source, OLD.manual_wins)
                            IS NOT DISTINCT FROM (NEW.quota_instances, NEW.reserved_instances, NEW.source,
                                                  NEW.manual_wins) THEN
        RETURN NULL;  -- nothing a plan reads changed (a refresh that found the same figure)
    END IF;
    INSERT INTO instance_capacity_history (region_code, instance_type, quota_instances, reserved_instances,
                                           source, manual_wins, quota_code, valid_from, replaced_by, refresh_id)
    VALUES (OLD.region_code, OLD.instance_type, OLD.quota_instances, OLD.reserved_instances, OLD.source,
            OLD.manual_wins, OLD.quota_code, OLD.updated_at,
            CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE NEW.source END, limits_refresh_id());
    RETURN NULL;
END
$$;

CREATE FUNCTION instance_pricing_keep_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.on_demand_usd_per_hour, OLD.reserved_usd_per_hour,
                             OLD.spot_interruption_allowance, OLD.source, OLD.manual_wins)
                            IS NOT DISTINCT FROM (NEW.on_demand_usd_per_hour, NEW.reserved_usd_per_hour,
                                                  NEW.spot_interruption_allowance, NEW.source,
                                                  NEW.manual_wins) THEN
        RETURN NULL;
    END IF;
    INSERT INTO instance_pricing_history (region_code, instance_type, on_demand_usd_per_hour,
                                          reserved_usd_per_hour, spot_interruption_allowance, source,
                                          manual_wins, price_sku, valid_from, replaced_by, refresh_id)
    VALUES (OLD.region_code, OLD.instance_type, OLD.on_demand_usd_per_hour, OLD.reserved_usd_per_hour,
            OLD.spot_interruption_allowance, OLD.source, OLD.manual_wins, OLD.price_sku, OLD.updated_at,
            CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE NEW.source END, limits_refresh_id());
    RETURN NULL;
END
$$;

CREATE TRIGGER instance_capacity_history_trigger
    AFTER UPDATE OR DELETE ON instance_capacity
    FOR EACH ROW EXECUTE FUNCTION instance_capacity_keep_history();

CREATE TRIGGER instance_pricing_history_trigger
    AFTER UPDATE OR DELETE ON instance_pricing
    FOR EACH ROW EXECUTE FUNCTION instance_pricing_keep_history();

-- 2. The hard cap (Param budget_hard_cap_usd): recorded with the run's first launch,
--    read by the budget guard (regional_training.launch.budget.enforce_hard_caps), which stops
--    the run's newest running jobs when its actual spend would cross the cap before the
--    guard looks again. Each stop is recorded with the figures it was decided on.
CREATE TABLE budget_hard_caps (
    dag_id       text NOT NULL,
    run_id       text NOT NULL,
    hard_cap_usd numeric(14, 4) NOT NULL CHECK (hard_cap_usd >= 0),
    set_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, run_id)
);

CREATE TABLE budget_cap_stops (
    dag_id          text NOT NULL,
    run_id          text NOT NULL,
    target_key      text NOT NULL,
    job_name        text NOT NULL,
    region_code     text NOT NULL REFERENCES regions (region_code),
    hard_cap_usd    numeric(14, 4) NOT NULL,
    actual_usd      numeric(14, 4) NOT NULL,  -- the run's spend when the guard decided
    projected_usd   numeric(14, 4) NOT NULL,  -- ... and by the guard's next look, had it run on
    stopped_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, run_id, job_name)
);
