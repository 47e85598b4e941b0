"""Diagnostic only: what holds the triggerer's event loop (issue 33; docs/services.md,
"The triggerer's event loop").

Put this folder on the services' ``PYTHONPATH`` (the bench passes its own on) and name
a folder in ``MRT_LOOP_SAMPLES``; in a process whose arguments include ``triggerer``
every loop step over 80 ms wall is written to ``$MRT_LOOP_SAMPLES/<pid>.txt`` with its
wall and thread CPU time and its handle, the loop thread's stack and the other threads'
sampled every 20 ms while it ran over 60 ms, and every full garbage collection (its
thread and duration). A step with little CPU waited (for the GIL or a core)::

    MRT_LOOP_SAMPLES=/tmp/steps PYTHONPATH=bench/triggerer_sampler \
        .venv/bin/python -m bench.services_scale --targets 64
"""

import os
import sys

if "triggerer" in sys.argv and os.environ.get("MRT_LOOP_SAMPLES"):
    import asyncio.events
    import gc
    import threading
    import time
    import traceback

    _state = {"pid": None, "start": 0.0, "cpu": 0.0, "handle": None, "tid": None, "samples": []}
    _orig = asyncio.events.Handle._run

    def _out():
        return open(os.path.join(os.environ["MRT_LOOP_SAMPLES"], f"{os.getpid()}.txt"), "a")

    def _watch():
        while True:
            time.sleep(0.02)
            start, tid = _state["start"], _state["tid"]
            if start and time.perf_counter() - start > 0.06:
                frames = sys._current_frames()
                frame = frames.get(tid)
                if frame is not None:
                    others = "".join(
                        f"  [thread {t}] " + "".join(traceback.format_stack(fr)[-2:]).replace("\n", " | ")[:400] + "\n"
                        for t, fr in frames.items() if t not in (tid, threading.get_ident()))
                    _state["samples"].append("".join(traceback.format_stack(frame)[-6:]) + others)

    def _gc(phase, info):
        if info.get("generation") == 2:
            if phase == "start":
                _state["gc"] = time.perf_counter()
            else:
                with _out() as f:
                    took = time.perf_counter() - _state.get("gc", 0)
                    f.write(f"GC gen2 {time.strftime('%H:%M:%S')} {took:.3f}s in {threading.current_thread().name}\n")

    def _run(self):
        if _state["pid"] != os.getpid():
            _state["pid"], _state["tid"] = os.getpid(), threading.get_ident()
            threading.Thread(target=_watch, daemon=True).start()
            gc.callbacks.append(_gc)
        if threading.get_ident() != _state["tid"]:
            return _orig(self)
        _state["samples"] = []
        _state["cpu"] = time.thread_time()
        _state["start"] = t0 = time.perf_counter()
        try:
            return _orig(self)
        finally:
            wall = time.perf_counter() - t0
            _state["start"] = 0.0
            cpu = time.thread_time() - _state["cpu"]
            if wall > 0.08:
                with _out() as f:
                    f.write(f"=== {time.strftime('%H:%M:%S')} step wall {wall:.3f}s cpu {cpu:.3f}s: {self!r:.300}\n")
                    for s in _state["samples"]:
                        f.write("--- sample\n" + s)

    asyncio.events.Handle._run = _run
