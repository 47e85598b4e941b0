-- Placement that learns (issue 31): place_targets.sql reads the project's own history,
-- training_runs (the jobs that ran) and placement_moves (each region and option a target
-- left for lack of capacity: CapacityError, InsufficientCapacity, MaxWaitTimeExceeded =
-- spot never launched or interrupted until its wait ran out), per region x instance type
-- x purchase option, with a decay over time; see docs/placement.md "Learning from
-- failures". Only indexes are needed: the events are already recorded.
-- Append-only: later changes go in V007+.

-- The successes: recorded jobs of one instance type within the decay horizon.
CREATE INDEX training_runs_history_idx
    ON training_runs (instance_type, recorded_at)
    INCLUDE (region_code, purchase_option, attempt, status);

-- The failures: moves within the horizon (joined to their row for the instance type).
CREATE INDEX placement_moves_moved_at_idx ON placement_moves (moved_at);
