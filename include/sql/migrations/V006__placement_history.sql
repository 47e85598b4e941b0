-- Placement that learns (issue 31): place_targets.sql reads the project's own history
-- of capacity per instance type x region x purchase option: a completed job is a
-- success there; a failover move away from it is a failure (placement_moves: a
-- CapacityError / InsufficientCapacity, or MaxWaitTimeExceeded = a spot job never
-- launched or interrupted until its wait ran out). See docs/placement.md "Learning from
-- failures". Append-only: later changes go in V007+.
--
-- The events are already recorded; this rollup counts them per UTC day, kept by the
-- triggers below, so the placement reads a few hundred rows (types x regions x options
-- x days within the decay horizon) instead of every job of the last months: the query
-- stays within 1.2x of its cost without the model (bench/placement_query.py).
CREATE TABLE placement_outcomes_daily (
    instance_type   text NOT NULL,
    region_code     text NOT NULL REFERENCES regions (region_code),
    purchase_option text NOT NULL,  -- as recorded (training_runs, placement_moves)
    day             date NOT NULL,
    completed       integer NOT NULL DEFAULT 0 CHECK (completed >= 0),
    failed          integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    PRIMARY KEY (instance_type, region_code, purchase_option, day)
);

CREATE FUNCTION placement_outcomes_bump(p_type text, p_region text, p_option text, p_at timestamptz,
                                        p_completed integer, p_failed integer) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO placement_outcomes_daily AS o (instance_type, region_code, purchase_option, day,
                                               completed, failed)
    VALUES (p_type, p_region, p_option, (p_at AT TIME ZONE 'UTC')::date,
            greatest(p_completed, 0), greatest(p_failed, 0))
    -- clamped at 0: a rollup row deleted by hand (or rows written with triggers off)
    -- must never make recording a job fail; the model is statistics, not accounts
    ON CONFLICT (instance_type, region_code, purchase_option, day) DO UPDATE
       SET completed = greatest(o.completed + p_completed, 0), failed = greatest(o.failed + p_failed, 0)
$$;

-- A row counts as a success while it is Completed (with a known option), on its
-- recorded_at day; its moves count as failures under its instance type. The collector
-- records a target's moves before its row (and again, as no-ops, on a re-run), so the
-- row's insert counts the moves already there and a move's insert counts itself only
-- when its row exists: each move is counted once either way.
CREATE FUNCTION placement_outcomes_from_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.status = 'Completed' AND OLD.purchase_option IS NOT NULL THEN
            PERFORM placement_outcomes_bump(OLD.instance_type, OLD.region_code, OLD.purchase_option,
                                            OLD.recorded_at, -1, 0);
        END IF;
        IF TG_OP = 'DELETE' OR OLD.instance_type IS DISTINCT FROM NEW.instance_type THEN
            PERFORM placement_outcomes_bump(OLD.instance_type, m.from_region, m.from_option, m.moved_at, 0, -1)
               FROM placement_moves AS m
              WHERE (m.dag_id, m.run_id, m.target_key) = (OLD.dag_id, OLD.run_id, OLD.target_key);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.status = 'Completed' AND NEW.purchase_option IS NOT NULL THEN
            PERFORM placement_outcomes_bump(NEW.instance_type, NEW.region_code, NEW.purchase_option,
                                            NEW.recorded_at, 1, 0);
        END IF;
        IF TG_OP = 'INSERT' OR OLD.instance_type IS DISTINCT FROM NEW.instance_type THEN
            PERFORM placement_outcomes_bump(NEW.instance_type, m.from_region, m.from_option, m.moved_at, 0, 1)
               FROM placement_moves AS m
              WHERE (m.dag_id, m.run_id, m.target_key) = (NEW.dag_id, NEW.run_id, NEW.target_key);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION placement_outcomes_from_move() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    m placement_moves;
    sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    m := CASE TG_OP WHEN 'INSERT' THEN NEW ELSE OLD END;
    PERFORM placement_outcomes_bump(tr.instance_type, m.from_region, m.from_option, m.moved_at, 0, sign)
       FROM training_runs AS tr
      WHERE (tr.dag_id, tr.run_id, tr.target_key) = (m.dag_id, m.run_id, m.target_key);
    RETURN NULL;
END
$$;

CREATE TRIGGER training_runs_placement_outcomes
    AFTER INSERT OR DELETE OR UPDATE OF status, purchase_option, region_code, instance_type, recorded_at
    ON training_runs FOR EACH ROW EXECUTE FUNCTION placement_outcomes_from_run();

CREATE TRIGGER placement_moves_placement_outcomes
    AFTER INSERT OR DELETE ON placement_moves
    FOR EACH ROW EXECUTE FUNCTION placement_outcomes_from_move();

-- What was recorded before this migration.
INSERT INTO placement_outcomes_daily (instance_type, region_code, purchase_option, day, completed, failed)
SELECT instance_type, region_code, purchase_option, day, sum(completed)::integer, sum(failed)::integer
  FROM (SELECT tr.instance_type, tr.region_code, tr.purchase_option,
               (tr.recorded_at AT TIME ZONE 'UTC')::date AS day, 1 AS completed, 0 AS failed
          FROM training_runs AS tr
         WHERE tr.status = 'Completed' AND tr.purchase_option IS NOT NULL
        UNION ALL
        SELECT tr.instance_type, m.from_region, m.from_option, (m.moved_at AT TIME ZONE 'UTC')::date, 0, 1
          FROM placement_moves AS m
          JOIN training_runs AS tr USING (dag_id, run_id, target_key)) AS e
 GROUP BY instance_type, region_code, purchase_option, day;
