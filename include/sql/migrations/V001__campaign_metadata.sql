-- Campaign metadata: where data was recorded, what was labelled, where copies live,
-- and what training made of it. Later migrations add prices, capacity and quotas per
-- region as tables keyed by region_code (and instance type), so nothing here changes.

CREATE TABLE regions (
    region_code      text PRIMARY KEY
                     CHECK (region_code ~ '^[a-z]{2}(-gov)?-[a-z]+-[0-9]$'),
    display_name     text NOT NULL,
    -- SageMaker writes model artifacts and checkpoints here (same-region bucket).
    output_bucket    text NOT NULL UNIQUE
                     CHECK (output_bucket ~ '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'),
    training_enabled boolean NOT NULL DEFAULT true
);

CREATE TABLE campaigns (
    campaign_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_key    text NOT NULL UNIQUE CHECK (campaign_key ~ '^[a-z0-9][a-z0-9-]{0,47}$'),
    recorded_region text NOT NULL REFERENCES regions (region_code),
    recorded_from   date NOT NULL,
    recorded_to     date NOT NULL,
    vehicle_fleet   text,
    status          text NOT NULL DEFAULT 'recording'
                    CHECK (status IN ('recording', 'labelling', 'ready', 'archived')),
    CHECK (recorded_to >= recorded_from)
);

-- A dataset is one labelled output of a campaign (a campaign may be relabelled).
CREATE TABLE datasets (
    dataset_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES campaigns (campaign_id),
    dataset_key  text NOT NULL CHECK (dataset_key ~ '^[a-z0-9][a-z0-9-]{0,47}$'),
    label_schema text NOT NULL,
    record_count bigint NOT NULL CHECK (record_count >= 0),
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, dataset_key)
);

-- The same dataset may be replicated into several regions' buckets.
CREATE TABLE dataset_copies (
    copy_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset_id  bigint NOT NULL REFERENCES datasets (dataset_id),
    region_code text NOT NULL REFERENCES regions (region_code),
    s3_uri      text NOT NULL UNIQUE,
    status      text NOT NULL DEFAULT 'available'
                CHECK (status IN ('syncing', 'available', 'deleted')),
    synced_at   timestamptz,
    UNIQUE (dataset_id, region_code)
);
CREATE INDEX dataset_copies_region_idx ON dataset_copies (region_code);

-- One row per (DAG run, target): written by the collectors with UPSERT, so a cleared
-- and re-run region replaces its row instead of adding a second one.
CREATE TABLE training_runs (
    dag_id                text NOT NULL,
    run_id                text NOT NULL,
    target_key            text NOT NULL,
    region_code           text NOT NULL REFERENCES regions (region_code),
    dataset_id            bigint NOT NULL REFERENCES datasets (dataset_id),
    copy_id               bigint REFERENCES dataset_copies (copy_id),
    training_job_name     text NOT NULL,
    training_job_arn      text,
    status                text NOT NULL,
    failure_reason        text,
    hyperparameters_sha256 text NOT NULL CHECK (hyperparameters_sha256 ~ '^[0-9a-f]{64}$'),
    instance_type         text NOT NULL,
    instance_count        integer NOT NULL CHECK (instance_count > 0),
    training_start_time   timestamptz,
    training_end_time     timestamptz,
    billable_seconds      integer CHECK (billable_seconds >= 0),
    metrics               jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_artifact_uri   text,
    model_artifact_uri    text,
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, run_id, target_key)
);
CREATE INDEX training_runs_dataset_idx ON training_runs (dataset_id);
