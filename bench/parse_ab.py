"""Same-hour A/B of the DAG's parse time between two commits: prints figures, asserts nothing.

Each round parses, in a fresh interpreter each (the bench's ``PARSE``), the bare DAG, the
DAG file at ``--before`` and at ``--after`` (each commit's tree from ``git archive``, its
package first on ``PYTHONPATH``, everything from bytecode), the order rotating per round
so a busy machine slows all three alike. Then ``--package-rounds`` times each side's
package imports alone (the DAG file's ``regional_training`` modules and ``param_specs()``)
with the provider modules already imported, which the load blurs less.

    .venv/bin/python -m bench.parse_ab --before 88c76fc --after d771d25 [--rounds 21] [--package-rounds 15]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# bench/ is the script's directory, first on sys.path: the bench's own parse, one definition.
from bench.dag_benchmarks import BARE_DAG, PARSE, load_line

REPO = Path(__file__).resolve().parents[1]

PACKAGE_IMPORTS = r"""
import time
import airflow.providers.amazon.aws.hooks.batch_client, airflow.providers.amazon.aws.operators.sagemaker
import airflow.providers.amazon.aws.triggers.sagemaker, airflow.sdk.bases.decorator, airflow.sdk
start = time.perf_counter()
import regional_training.run.assets, regional_training.tasks, regional_training.runtime.aws_io
import regional_training.launch.batch_jobs
import regional_training.operators, regional_training.plan.params, regional_training.runtime.strict_params
import regional_training.runtime.taskflow
regional_training.plan.params.param_specs()
print(time.perf_counter() - start)
"""


def _tree(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "dags", "plugins"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    compileall.compile_dir(str(into), quiet=1)
    return into


def _seconds(code: str, *args: str, pythonpath: str | None) -> float:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True,
                            text=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--package-rounds", type=int, default=15)
    args = parser.parse_args()
    # The load decides how far a figure can be trusted (docs/benchmarks.md): printed with it.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare" / "bare_dag.py"
        bare.parent.mkdir()
        bare.write_text(BARE_DAG)
        compileall.compile_file(str(bare), quiet=1)
        sides = {name: _tree(rev, Path(tmp) / name) for name, rev in (("before", args.before), ("after", args.after))}
        parses: dict[str, list[float]] = {"bare": [], "before": [], "after": []}
        order = ["bare", "before", "after"]
        for i in range(args.rounds):
            for name in order[i % 3:] + order[: i % 3]:
                if name == "bare":
                    parses[name].append(_seconds(PARSE, str(bare), pythonpath=None))
                else:
                    parses[name].append(_seconds(PARSE, str(sides[name] / "dags" / "multi_region_training.py"),
                                                 pythonpath=str(sides[name] / "plugins")))
        imports: dict[str, list[float]] = {"before": [], "after": []}
        for i in range(args.package_rounds):
            for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                imports[name].append(_seconds(PACKAGE_IMPORTS, pythonpath=str(sides[name] / "plugins")))
    m = {k: statistics.median(v) * 1000 for k, v in parses.items()}
    print(f"fresh-interpreter parse, median of {args.rounds}: bare {m['bare']:.1f} ms; "
          f"{args.before} {m['before']:.1f} ms (ratio {m['before'] / m['bare']:.3f}); "
          f"{args.after} {m['after']:.1f} ms (ratio {m['after'] / m['bare']:.3f})")
    p = {k: statistics.median(v) * 1000 for k, v in imports.items()}
    print(f"package imports + param_specs() after the providers, median of {args.package_rounds}: "
          f"{args.before} {p['before']:.1f} ms; {args.after} {p['after']:.1f} ms")
    print(load_line(load_before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
