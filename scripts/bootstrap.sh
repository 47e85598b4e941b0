#!/usr/bin/env bash
# Create (or reuse) the Airflow environment and link it at .venv; print its python.
#
# The venv lives in a cache directory keyed by the hash of the pinned requirement
# files: a second run on the same machine takes a second, a changed pin builds a fresh
# one. A `.complete` marker is written last, so an interrupted install is never
# mistaken for a ready venv (scripts in a venv hold absolute paths, so it is built in
# place rather than renamed).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MRT_CACHE:-$HOME/.cache/mrt}
uv_version=0.9.5

reqs=("$repo/requirements.txt" "$repo/requirements/dev.txt" "$repo/requirements/constraints.txt")
[ -f "$repo/requirements/lint.txt" ] && reqs+=("$repo/requirements/lint.txt")
key=$( { echo "uv=$uv_version"; cat "${reqs[@]}"; } | sha256sum | cut -c1-12)
venv="$cache/venv-airflow-$key"

if [ ! -f "$venv/.complete" ]; then
    mkdir -p "$cache"
    if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$uv_version" ]; then
        python3 -m pip install --quiet "uv==$uv_version" >&2
    fi
    rm -rf "$venv"
    uv venv --quiet --python python3.11 "$venv" >&2
    extra=()
    [ -f "$repo/requirements/lint.txt" ] && extra=(-r "$repo/requirements/lint.txt")
    VIRTUAL_ENV="$venv" uv pip install --quiet -c "$repo/requirements/constraints.txt" \
        -r "$repo/requirements/dev.txt" "${extra[@]}" >&2
    touch "$venv/.complete"
fi
# Byte-compile the venv once (uv does not by default, and PYTHONDONTWRITEBYTECODE, set
# on some machines, stops Python from caching it): otherwise every process that imports
# Airflow compiles ~1,000 modules again, about 5 s of CPU each (the services, api-servers,
# task runs and CLI calls of the tests). Images compile at build time.
if [ ! -f "$venv/.bytecode" ]; then
    "$venv/bin/python" -m compileall -q -j 0 "$venv/lib" >/dev/null 2>&1 || true
    touch "$venv/.bytecode"
fi
# The project's package (pyproject.toml, plugins layout), editable: the tree is the code.
installed=$("$venv/bin/python" -c 'import os, regional_training as r; print(os.path.dirname(r.__file__))' \
    2>/dev/null || true)
if [ "$installed" != "$repo/plugins/regional_training" ]; then
    command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$uv_version" >&2
    VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps -e "$repo" >&2
fi
# The DAG files and the package too (only what changed since the last run; __pycache__
# is git-ignored), as the Airflow image does at build time.
"$venv/bin/python" -m compileall -q "$repo/dags" "$repo/plugins" >/dev/null 2>&1 || true
ln -sfn "$venv" "$repo/.venv"
echo "$venv/bin/python"
