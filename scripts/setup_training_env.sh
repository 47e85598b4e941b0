#!/usr/bin/env bash
# Create (or reuse) the training venv: the training image's Python set, CPU build:
# TensorFlow + Horovod built from source with MPI and gloo, plus the image-only
# additions (the sagemaker-training toolkit whose `train` command the local AWS
# emulator launches every job through, and mpi4py, which its mpirun launch runs
# `python -m mpi4py train.py` with). The same two files the Dockerfile installs.
#
# System packages: OpenMPI (mpirun, and mpicc for Horovod's MPI build and mpi4py) and
# sshd (the toolkit's multi-host launch). When root and missing, they are installed
# from Debian's packages (apt-get); otherwise the script stops and names them.
#
# The venv lives at ${MRT_CACHE:-$HOME/.cache/mrt}/venv-train-<key>, where <key> is
# the first 12 hex digits of sha256(requirements/training.txt + this script's
# build settings), so any change of pins or build flags gives a fresh venv and an
# unchanged one is reused in seconds. It is built in a temp dir and renamed into
# place only once complete and verified, so a killed build never leaves a venv
# that looks finished. The Horovod wheel is cached beside it (same key), so a
# venv rebuilt after deletion skips the ~4 minute compile.
#
# Last stdout line: the venv's python path (everything else goes to stderr).
#
# Env: MRT_CACHE (cache root), MRT_TRAIN_BASE_PYTHON (interpreter to base the
# venv on; default python3.11, else python3), MRT_BUILD_JOBS (make -j for the
# Horovod build; default: number of CPUs).
set -euo pipefail

log() { printf '[setup_training_env] %s\n' "$*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="${repo_root}/requirements/training.txt"
image_requirements="${repo_root}/requirements/training-image.txt"
cache="${MRT_CACHE:-${HOME}/.cache/mrt}"

base_python="${MRT_TRAIN_BASE_PYTHON:-}"
if [[ -z "${base_python}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then base_python=python3.11; else base_python=python3; fi
fi
base_python="$(command -v "${base_python}")"
py_version="$("${base_python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

horovod_pin="$(grep -E '^horovod==' "${requirements}" | head -n1)"
if [[ -z "${horovod_pin}" ]]; then
    log "no horovod==<version> line in ${requirements}"
    exit 1
fi

# OpenMPI and sshd, as the image has them (images/training/Dockerfile).
need_packages=()
command -v mpirun >/dev/null 2>&1 || need_packages+=(openmpi-bin)
command -v mpicc >/dev/null 2>&1 || need_packages+=(libopenmpi-dev)
[[ -x /usr/sbin/sshd ]] || need_packages+=(openssh-server)
if ((${#need_packages[@]})); then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing ${need_packages[*]} (apt-get)"
        apt-get install -y -q --no-install-recommends openmpi-bin libopenmpi-dev openssh-server >&2 \
            || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends \
                openmpi-bin libopenmpi-dev openssh-server >&2; }
    else
        log "missing ${need_packages[*]}: install openmpi-bin libopenmpi-dev openssh-server"
        exit 1
    fi
fi

# Build-relevant settings: they go into the cache key, so changing any of them
# (or the pins) builds a new venv instead of silently reusing an old one.
# MPI as well as gloo: SageMaker launches sagemaker_mpi_enabled jobs under mpirun, and
# a Horovod without MPI then runs every rank alone (hvd.size() == 1), silently.
horovod_env=(
    HOROVOD_WITH_TENSORFLOW=1
    HOROVOD_WITH_GLOO=1
    HOROVOD_WITH_MPI=1
    HOROVOD_WITHOUT_PYTORCH=1
    HOROVOD_WITHOUT_MXNET=1
)
mpi_version="$(mpirun --version 2>/dev/null | head -n1 || true)"
settings="python=${py_version};${horovod_env[*]};cmake<4;mpi=${mpi_version};layout=2"
key="$( { cat "${requirements}" "${image_requirements}"; printf '%s\n' "${settings}"; } \
    | sha256sum | cut -c1-12)"
venv="${cache}/venv-train-${key}"
# The Horovod wheel depends only on Horovod, TensorFlow, Python and the flags, so
# other pin changes (protobuf, numpy patch) reuse it instead of recompiling.
tf_pin="$(grep -E '^tensorflow(-cpu)?==' "${requirements}" | head -n1)"
wheel_key="$(printf '%s\n' "${horovod_pin}" "${tf_pin}" "${settings}" | sha256sum | cut -c1-12)"
wheel_dir="${cache}/wheels/horovod-${wheel_key}"

# The project's package, installed as the image installs it (pip install --no-deps, a
# copy in the venv): the entry point imports regional_training.plan.metric_format. A copy,
# not an editable install, because an emulated job host has its own /tmp (the toolkit's
# MPI files), so a checkout under /tmp would be invisible inside the job. Outside the
# cache key, as in scripts/bootstrap.sh: reinstalled whenever the package's sources
# differ from what the venv holds.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ready() {
    local python="$1/bin/python" want
    want="$(find "${repo}/plugins/regional_training" -name "*.py" -not -path "*/__pycache__/*" | LC_ALL=C sort | xargs cat "${repo}/pyproject.toml" | sha256sum | cut -c1-16)"
    if [[ "$(cat "$1/.mrt-package" 2>/dev/null || true)" != "${want}" ]]; then
        # From a copy of what the Dockerfile copies, so the build leaves nothing in the tree.
        local src
        src="$(mktemp -d)"
        mkdir -p "${src}/plugins"
        cp "${repo}/pyproject.toml" "${src}/"
        cp -r "${repo}/plugins/regional_training" "${src}/plugins/"
        VIRTUAL_ENV="$1" uv pip install --quiet --no-deps --reinstall --python "${python}" "${src}" >&2
        rm -rf "${src}"
        printf '%s\n' "${want}" >"$1/.mrt-package"
    fi
    # Where this venv's Horovod wheel is: scripts/build_images.sh installs it into the
    # CPU training image instead of compiling the same pins and flags again.
    if compgen -G "${wheel_dir}/horovod-*.whl" >/dev/null; then
        printf '%s\n' "${wheel_dir}" >"$1/.mrt-horovod-wheel-dir"
    fi
    printf '%s\n' "${python}"
}

if [[ -x "${venv}/bin/python" ]]; then
    log "reusing ${venv}"
    ready "${venv}"
    exit 0
fi

mkdir -p "${cache}"
# Serialise concurrent setups of the same key (two CI jobs, two shells).
exec 9>"${cache}/.venv-train-${key}.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [[ -x "${venv}/bin/python" ]]; then
    log "reusing ${venv} (built by a concurrent run)"
    ready "${venv}"
    exit 0
fi

# --no-cache-dir on the Horovod build below: pip's own wheel cache is keyed on the
# sdist only and would hand back a Horovod compiled against another TensorFlow; the
# keyed cache here (wheel_dir) is the one that is safe to reuse.
#
# Horovod's setup.py runs whatever `cmake` is first on PATH; pip's cmake 4 cannot
# configure Horovod's bundled gloo, so put a cmake < 4 first.
find_cmake() {
    local candidate version
    for candidate in "${MRT_CMAKE:-}" /usr/bin/cmake /usr/local/bin/cmake "$(command -v cmake || true)"; do
        [[ -n "${candidate}" && -x "${candidate}" ]] || continue
        version="$("${candidate}" --version | head -n1 | grep -oE '[0-9]+\.[0-9]+' | head -n1)"
        if [[ "${version%%.*}" -ge 3 && "${version%%.*}" -lt 4 ]]; then
            printf '%s\n' "${candidate}"
            return 0
        fi
    done
    return 1
}

tmp="$(mktemp -d "${cache}/.venv-train-${key}.tmp.XXXXXX")"
cleanup() { rm -rf "${tmp}"; }
trap cleanup EXIT

log "building ${venv} (python ${py_version}, ${horovod_pin})"
# --relocatable: entry points (horovodrun) and activation scripts find the venv
# relative to themselves, so the venv still works after the rename below.
uv venv --quiet --relocatable --python "${base_python}" "${tmp}/venv" >&2
grep -vE '^horovod==' "${requirements}" >"${tmp}/requirements-no-horovod.txt"
VIRTUAL_ENV="${tmp}/venv" uv pip install --quiet --python "${tmp}/venv/bin/python" \
    -r "${tmp}/requirements-no-horovod.txt" >&2
# The image-only set (toolkit, mpi4py), constrained by the set above, as the Dockerfile does.
VIRTUAL_ENV="${tmp}/venv" uv pip install --quiet --python "${tmp}/venv/bin/python" \
    -r "${image_requirements}" -c "${tmp}/requirements-no-horovod.txt" >&2

if ! compgen -G "${wheel_dir}/horovod-*.whl" >/dev/null; then
    cmake_bin="$(find_cmake)" || { log "need cmake >= 3.13 and < 4 (apt-get install cmake)"; exit 1; }
    log "compiling ${horovod_pin} with ${cmake_bin} (a few minutes)"
    mkdir -p "${tmp}/cmake-bin" "${tmp}/wheel"
    ln -s "${cmake_bin}" "${tmp}/cmake-bin/cmake"
    env "${horovod_env[@]}" \
        PATH="${tmp}/cmake-bin:${PATH}" \
        MAKEFLAGS="-j${MRT_BUILD_JOBS:-$(nproc)}" \
        "${tmp}/venv/bin/python" -m pip wheel --quiet --no-cache-dir --no-deps --no-build-isolation \
        --no-binary horovod -w "${tmp}/wheel" "${horovod_pin}" >&2
    mkdir -p "${cache}/wheels"
    rm -rf "${wheel_dir}"
    mv -T "${tmp}/wheel" "${wheel_dir}"
else
    log "using cached Horovod wheel in ${wheel_dir}"
fi
VIRTUAL_ENV="${tmp}/venv" uv pip install --quiet --no-deps --python "${tmp}/venv/bin/python" \
    "${wheel_dir}"/horovod-*.whl >&2

# Verify before publishing: Horovod must have its TensorFlow op library, MPI and gloo;
# mpi4py and the toolkit's `train` command must be there.
"${tmp}/venv/bin/python" - >&2 <<'PY'
import horovod.tensorflow as hvd
import mpi4py
import sagemaker_training
import tensorflow as tf

assert hvd.gloo_built(), "horovod built without gloo"
assert hvd.mpi_built(), "horovod built without MPI"
hvd.init()
print("tensorflow", tf.__version__, "mpi4py", mpi4py.__version__, "horovod ok, size", hvd.size())
PY
[[ -x "${tmp}/venv/bin/train" ]] || { log "no sagemaker-training 'train' command in the venv"; exit 1; }

mv -T "${tmp}/venv" "${venv}"
log "ready: ${venv}"
ready "${venv}"
