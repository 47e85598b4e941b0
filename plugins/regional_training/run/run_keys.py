"""The DAG's task ids and the XCom keys its tasks hand each other: one module, at the
bottom of the package (it imports nothing), so the DAG file, the task bodies, the
recording and the operators name the same strings without importing one another
(issue 28; tests/unit/test_import_graph.py fails on a cycle).
"""

from __future__ import annotations

# Task ids, as the DAG file names its tasks.
SELECT_TARGETS = "select_targets"
RENDER_ARRAY_FILE = "render_array_file"
BUILD_REQUESTS = "build_requests"
JOBS_TO_LAUNCH = "jobs_to_launch"
#: launcher=batch_array: the one Batch array job whose child N launches line N.
LAUNCH_BATCH_ARRAY = "launch_batch_array"
#: The mapped training task (one per target).
TRAIN = "train"
#: Records each launched target its training task could not (ALL_DONE, before ``summarize``).
RECORD_LATE = "record_late"
SUMMARIZE = "summarize"
CHECK_REGIONS = "check_regions"

# XCom keys (the return value of each task is its default key, ``return_value``).
#: ``jobs_to_launch``: the ``Reused`` rows it recorded (the summary and the watcher read them).
REUSED_KEY = "reused_rows"
#: ``train``: the failover moves, pushed when they change (the late recording reads them
#: for a target whose task could not record it; a resumed try gets them with its deferral).
MOVES_KEY = "placement_moves"
#: The rows recorded late, in ``summarize``'s result as it was before ``record_late`` became its
#: own task (that task now returns them): read only for a run in flight across the change.
RECORDED_LATE = "recorded_late"
