"""Airflow's log server (``airflow.utils.serve_logs``) on one address instead of all.

The scheduler and the triggerer each start a log server for the API server to read the
logs of running and deferred tries from (``[logging] worker_log_server_port`` 8793,
``trigger_log_server_port`` 8794). Airflow 3.3 binds it to every interface
(``serve_logs/core.py``: ``uvicorn.run(..., host="")``; no setting names the host), so a
local stack that otherwise listens only on 127.0.0.1 exposed both ports on the
machine's network. The local stack starts both services with ``--skip-serve-logs`` and
runs this instead: the same application (``log_server.get_app``: the files under
``[logging] base_log_folder``, each request checked against the stack's secret key) on
``--host`` (the stack's address) and one free port, which both port settings name. One
server serves both kinds: the scheduler's tries and the triggerer's triggers write under
the same folder of the same home.

    python dev/log_server.py --host 127.0.0.1 --port 43123
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="the one address to listen on")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn
    from airflow.configuration import conf
    from setproctitle import setproctitle

    setproctitle("airflow serve-logs")  # as Airflow names its own (the benchmark's CPU table)
    uvicorn.run("airflow.utils.serve_logs.log_server:get_app", factory=True, host=args.host, port=args.port,
                log_level=conf.get("logging", "uvicorn_logging_level", fallback="info").lower(),
                # As Airflow runs it: the process's logging setup kept, no access log.
                log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
