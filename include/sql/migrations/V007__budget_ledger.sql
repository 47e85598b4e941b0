-- A budget that holds (issue 31): every training job a run creates is reserved here
-- first, under a per-run lock, and refused when it would push the run's committed spend
-- over budget_usd (plugins/regional_training/launch/budget.py; docs/placement.md "Budget at
-- launch"). Append-only: later changes go in V008+.

-- One row per job a run created or was about to create (first launch, failover move or
-- new attempt). actual_cost_usd is set when the job is known to have ended (settled).
CREATE TABLE budget_ledger (
    dag_id               text NOT NULL,
    run_id               text NOT NULL,
    target_key           text NOT NULL,
    job_name             text NOT NULL,
    region_code          text NOT NULL REFERENCES regions (region_code),
    purchase_option      text NOT NULL,
    instance_count       integer NOT NULL CHECK (instance_count > 0),
    -- the rate SageMaker bills BillableTimeInSeconds at (placement's billing_usd_per_hour)
    billing_usd_per_hour numeric(12, 4) NOT NULL CHECK (billing_usd_per_hour >= 0),
    expected_cost_usd    numeric(14, 4) NOT NULL CHECK (expected_cost_usd >= 0),
    reserved_at          timestamptz NOT NULL DEFAULT now(),
    actual_cost_usd      numeric(14, 4) CHECK (actual_cost_usd >= 0),
    settled_at           timestamptz,
    PRIMARY KEY (dag_id, run_id, job_name),
    CHECK ((actual_cost_usd IS NULL) = (settled_at IS NULL))
);
CREATE INDEX budget_ledger_target_idx ON budget_ledger (dag_id, run_id, target_key);

-- A launch the budget refused, with the figures it was refused on (one per job name:
-- a retried task refused again records nothing new).
CREATE TABLE budget_refusals (
    dag_id            text NOT NULL,
    run_id            text NOT NULL,
    target_key        text NOT NULL,
    job_name          text NOT NULL,
    region_code       text NOT NULL REFERENCES regions (region_code),
    purchase_option   text NOT NULL,
    budget_usd        numeric(14, 4) NOT NULL,
    committed_usd     numeric(14, 4) NOT NULL,
    launch_usd        numeric(14, 4) NOT NULL,
    refused_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, run_id, target_key, job_name)
);
