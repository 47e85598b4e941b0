#!/usr/bin/env bash
# Build the images users deploy, here, from their Dockerfiles, with podman (no Docker
# engine needed): the training image (images/training/Dockerfile), on request the
# Airflow image (images/airflow/Dockerfile, its `airflow` stage) and the bases. Each
# image is tagged by a hash of everything it is built from, and a build whose tag
# already exists is skipped, so an unchanged tree costs one `podman image exists`.
#
#   scripts/build_images.sh [training-cpu|training-gpu|airflow|base]...   (default: training-cpu)
#   scripts/build_images.sh --cached airflow   (the tag if built for these inputs, else empty)
#
# Last stdout line: the tag of the last image named (everything else goes to stderr).
#
# Base image: the Dockerfiles start FROM docker.io/library/debian:bookworm-slim. Where
# Docker Hub answers, that is pulled; where it does not (this project's CI), a stand-in
# of the same name is made from Debian's own packages (debootstrap --variant=minbase
# bookworm, what the official image is built from, minus its docs/locales trimming) and
# labelled org.mrt.stand-in=debootstrap. docs/images.md says exactly what differs.
#
# Reuse (CI builds the training venv too, scripts/setup_training_env.sh): the image's
# Python installs go through uv with the host's uv cache bound in, so each wheel is
# downloaded once for both; the CPU variant installs the venv's cached Horovod wheel
# (same pins, same flags, same Debian OpenMPI and Python minor) instead of compiling it
# again. Without those mounts (a plain `docker build`), the Dockerfile downloads and
# compiles itself: the mounts change how long a build takes, not what it contains.
#
# Env: MRT_CACHE (cache root, as setup_training_env.sh), MRT_TRAIN_PYTHON (the training
# venv's python, whose Horovod wheel the CPU variant reuses; found via
# setup_training_env.sh when unset), MRT_IMAGE_PULL=0 (never try Docker Hub),
# MRT_KEEP_OLD_IMAGES=1 (keep older tags: another checkout's tests may be using one).
set -euo pipefail
shopt -s inherit_errexit  # failures inside $(build_training ...) stop the script too

log() { printf '[build_images] %s\n' "$*" >&2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MRT_CACHE:-${HOME}/.cache/mrt}"
export CONTAINERS_CONF="${repo}/images/podman/containers.conf"
base_image=docker.io/library/debian:bookworm-slim

ensure_podman() {
    # catatonit: `podman run --init` (the emulator's image launch) needs it.
    if command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 \
            && command -v catatonit >/dev/null 2>&1; then
        return 0
    fi
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing podman, buildah, runc, catatonit, debootstrap (apt-get)"
        local pkgs=(podman buildah runc catatonit debootstrap fuse-overlayfs uidmap)
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2 \
            || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; }
    else
        log "need podman, runc and catatonit (apt-get install podman buildah runc catatonit debootstrap)"
        exit 1
    fi
}

ensure_base() {
    if podman image exists "${base_image}"; then
        return 0
    fi
    if [[ "${MRT_IMAGE_PULL:-1}" != 0 ]] && timeout 60 podman pull -q "${base_image}" >&2 2>/dev/null; then
        log "pulled ${base_image}"
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends debootstrap >&2
    log "Docker Hub unreachable: making the stand-in ${base_image} with debootstrap"
    local rootfs
    rootfs="$(mktemp -d "${cache}/.debootstrap.XXXXXX")"
    debootstrap --variant=minbase bookworm "${rootfs}" http://deb.debian.org/debian >&2
    # What the official slim image also leaves out: apt lists, docs, man pages.
    rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* \
        "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/cache/apt/archives/*.deb
    # The official image's sources (deb822) with the security suite; debootstrap writes
    # only the main suite.
    rm -f "${rootfs}/etc/apt/sources.list"
    cat >"${rootfs}/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    tar -C "${rootfs}" -c . | podman import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'LABEL org.mrt.stand-in=debootstrap' \
        - "${base_image}" >&2
    rm -rf "${rootfs}"
}

# The host's CA bundle for pip and uv inside a build (a TLS-inspecting proxy's CA is in
# it where there is one): the Dockerfiles' PIP_CERT / SSL_CERT_FILE build args. Appends
# to the caller's `volumes` and `args` arrays.
ca_bundle_args() {
    local bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
    if [[ -f "${bundle}" ]]; then
        volumes+=(-v "${bundle}:/run/mrt-host-ca.crt:ro")
        args+=(--build-arg PIP_CERT=/run/mrt-host-ca.crt --build-arg SSL_CERT_FILE=/run/mrt-host-ca.crt)
    fi
}

# Files a training image is built from (the Dockerfile's COPYs, and the Dockerfile).
training_inputs() {
    (cd "${repo}" && find images/training requirements/training.txt requirements/training-image.txt \
        pyproject.toml plugins/regional_training .dockerignore -type f \
        ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort)
}

build_training() {
    local variant="$1" key_extra="" volumes=() args=()
    local hash tag
    if [[ "${variant}" == cpu ]]; then
        # The venv's Horovod wheel: same pins and flags (MPI + gloo, no NCCL) as the CPU
        # variant compiles, built on this same Debian release.
        local train_python="${MRT_TRAIN_PYTHON:-}"
        [[ -n "${train_python}" ]] || train_python="$("${repo}/scripts/setup_training_env.sh" | tail -n1)"
        local wheel_dir wheel=""
        wheel_dir="$(cat "$(dirname "$(dirname "${train_python}")")/.mrt-horovod-wheel-dir" 2>/dev/null || true)"
        [[ -z "${wheel_dir}" ]] || wheel="$(compgen -G "${wheel_dir}/horovod-*.whl" | head -n1 || true)"
        if [[ -n "${wheel}" ]]; then
            volumes+=(-v "$(dirname "${wheel}"):/tmp/horovod-wheel:ro")
            key_extra="$(sha256sum "${wheel}" | cut -c1-16)"
        fi
    fi
    if [[ "${variant}" == gpu ]]; then
        # Horovod's CUDA compiler (the Dockerfile's CUDA_COMPILER): NVIDIA's nvcc from its
        # apt repository, what users build, where that repository answers; else clang from
        # Debian's archive against the CUDA wheels (docs/images.md, "The GPU variant").
        # MRT_CUDA_COMPILER=nvcc|clang chooses without asking.
        local compiler="${MRT_CUDA_COMPILER:-}"
        if [[ -z "${compiler}" ]]; then
            if curl -fsSI --max-time 20 -o /dev/null \
                    https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb; then
                compiler=nvcc
            else
                compiler=clang
                log "NVIDIA's CUDA repository does not answer: Horovod's CUDA file is compiled by clang (CUDA_COMPILER=clang), not nvcc"
            fi
        fi
        [[ "${compiler}" == nvcc || "${compiler}" == clang ]] || { log "MRT_CUDA_COMPILER must be nvcc or clang, not ${compiler}"; exit 2; }
        args+=(--build-arg "CUDA_COMPILER=${compiler}")
        key_extra="cuda=${compiler}"
    fi
    ca_bundle_args
    mkdir -p "${HOME}/.cache/uv"
    volumes+=(-v "$(uv cache dir 2>/dev/null || echo "${HOME}/.cache/uv"):/root/.cache/uv")
    hash="$( { training_inputs | while read -r f; do printf '%s %s\n' "$(sha256sum <"${repo}/${f}" | cut -c1-64)" "${f}"; done
        podman image inspect --format '{{.Id}}' "${base_image}"
        printf 'variant=%s wheel=%s\n' "${variant}" "${key_extra}"; } | sha256sum | cut -c1-12)"
    tag="localhost/multi-region-training/training:${variant}-${hash}"
    if podman image exists "${tag}"; then
        log "up to date: ${tag}"
        printf '%s\n' "${tag}"
        return 0
    fi
    args+=(--build-arg "VARIANT=${variant}" --target training)
    log "building ${tag}"
    local start=${SECONDS}
    podman build --isolation chroot --format docker --layers "${volumes[@]}" "${args[@]}" \
        -f "${repo}/images/training/Dockerfile" -t "${tag}" \
        -t "localhost/multi-region-training/training:${variant}" "${repo}" >&2
    # podman build can exit 0 when it is interrupted: the tag is the proof.
    podman image exists "${tag}" || { log "podman build did not produce ${tag}"; exit 1; }
    log "built ${tag} in $((SECONDS - start)) s"
    # Older builds of this variant go (their layers stay as the build cache while a newer
    # image shares them); one still used by a running container stays, untouched.
    local old
    [[ "${MRT_KEEP_OLD_IMAGES:-0}" == 1 ]] && { printf '%s\n' "${tag}"; return; }
    for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/multi-region-training/training \
            | grep -E ":${variant}-[0-9a-f]{12}$" | grep -vxF "${tag}" || true); do
        podman rmi "${old}" >/dev/null 2>&1 || true
    done
    printf '%s\n' "${tag}"
}

# The Airflow image's base: the official image where Docker Hub answers, else the
# stand-in of the same name (images/airflow/standin.Dockerfile; docs/images.md says what
# differs), rebuilt when its inputs change (their hash is its label).
airflow_base=docker.io/apache/airflow:3.3.2-python3.11

# The stand-in's CPython: this machine's python3.11 (the CI venv's), copied in
# (standin.Dockerfile says why); the official image has python.org's own.
host_python() { python3.11 -c 'import sys; print(sys.base_prefix, "%d.%d.%d" % sys.version_info[:3])'; }

standin_inputs_hash() {
    { sha256sum "${repo}/images/airflow/standin.Dockerfile" "${repo}/requirements/constraints.txt" | cut -c1-64
      podman image inspect --format '{{.Id}}' "${base_image}"; host_python; } | sha256sum | cut -c1-12
}

# True when the Airflow base is usable as is: the official image (no stand-in label), or
# a stand-in built from the current inputs.
airflow_base_current() {
    podman image exists "${airflow_base}" || return 1
    [[ -z "$(podman image inspect --format '{{index .Config.Labels "org.mrt.stand-in"}}' "${airflow_base}")" ]] \
        || [[ "$(podman image inspect --format '{{index .Config.Labels "org.mrt.stand-in-inputs"}}' "${airflow_base}")" \
              == "$(standin_inputs_hash)" ]]
}

ensure_airflow_base() {
    local want host
    airflow_base_current && return 0
    want="$(standin_inputs_hash)"
    host="$(host_python)"
    # What standin.Dockerfile copies: a python3.11 >= 3.11.5 (the pinned set's floor) with
    # its own prefix's bin/python3.11 and shared libpython (pyenv's or python.org's
    # --enable-shared build; Debian's is 3.11.2 and splits its files across /usr).
    if ! python3.11 -c 'import sys; sys.exit(sys.version_info < (3, 11, 5))' \
            || [[ ! -x "${host% *}/bin/python3.11" ]] || ! compgen -G "${host% *}/lib/libpython3.11.so*" >/dev/null; then
        log "the Airflow stand-in needs this machine's python3.11 >= 3.11.5 with bin/ and a shared libpython under one prefix; found ${host}"
        exit 1
    fi
    if podman image exists "${airflow_base}"; then
        podman rmi "${airflow_base}" >/dev/null 2>&1 || true
    elif [[ "${MRT_IMAGE_PULL:-1}" != 0 ]] && timeout 60 podman pull -q "${airflow_base}" >&2 2>/dev/null; then
        log "pulled ${airflow_base}"
        return 0
    fi
    log "Docker Hub unreachable: building the stand-in ${airflow_base}"
    local volumes=(-v "${host% *}:/tmp/host-python:ro") args=()
    ca_bundle_args
    podman build --isolation chroot --format docker "${volumes[@]}" "${args[@]}" \
        --label "org.mrt.stand-in-inputs=${want}" \
        -f "${repo}/images/airflow/standin.Dockerfile" -t "${airflow_base}" "${repo}" >&2
    podman image exists "${airflow_base}" || { log "podman build did not produce ${airflow_base}"; exit 1; }
}

# Files the Airflow image (its `airflow` stage) is built from.
airflow_inputs() {
    (cd "${repo}" && find images/airflow/Dockerfile requirements.txt requirements/constraints.txt \
        dags plugins include .dockerignore -type f \
        ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort)
}

airflow_tag() {
    printf 'localhost/multi-region-training/airflow:3.3.2-%s\n' "$( {
        airflow_inputs | while read -r f; do printf '%s %s\n' "$(sha256sum <"${repo}/${f}" | cut -c1-64)" "${f}"; done
        podman image inspect --format '{{.Id}}' "${airflow_base}"; } | sha256sum | cut -c1-12)"
}

# --cached: the tag when the image of the current inputs exists, else an empty line;
# nothing is built (scripts/test.sh: CI tests the Airflow image only where it is cached).
cached_airflow() {
    local tag
    if airflow_base_current && tag="$(airflow_tag)" && podman image exists "${tag}"; then
        printf '%s\n' "${tag}"
    else
        log "no Airflow image for the current inputs (build: scripts/build_images.sh airflow)"
        printf '\n'
    fi
}

build_airflow() {
    local volumes=() args=() tag
    ensure_airflow_base
    ca_bundle_args
    tag="$(airflow_tag)"
    if podman image exists "${tag}"; then
        log "up to date: ${tag}"
        printf '%s\n' "${tag}"
        return 0
    fi
    log "building ${tag}"
    local start=${SECONDS}
    podman build --isolation chroot --format docker --layers "${volumes[@]}" "${args[@]}" --target airflow \
        -f "${repo}/images/airflow/Dockerfile" -t "${tag}" "${repo}" >&2
    podman image exists "${tag}" || { log "podman build did not produce ${tag}"; exit 1; }
    log "built ${tag} in $((SECONDS - start)) s"
    local old
    [[ "${MRT_KEEP_OLD_IMAGES:-0}" == 1 ]] && { printf '%s\n' "${tag}"; return; }
    for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/multi-region-training/airflow \
            | grep -E ':3\.3\.2-[0-9a-f]{12}$' | grep -vxF "${tag}" || true); do
        podman rmi "${old}" >/dev/null 2>&1 || true
    done
    printf '%s\n' "${tag}"
}

main() {
    local cached=0
    if [[ "${1:-}" == --cached ]]; then cached=1; shift; fi
    local targets=("$@")
    ((${#targets[@]})) || targets=(training-cpu)
    mkdir -p "${cache}"
    ensure_podman
    # One build at a time per machine (two CI shells, a test and a script).
    exec 8>"${cache}/.build_images.lock"
    if command -v flock >/dev/null 2>&1; then flock 8; fi
    ensure_base
    local target out=""
    for target in "${targets[@]}"; do
        case "${target}" in
            base) out="${base_image}" ;;
            training-cpu) out="$(build_training cpu)" ;;
            training-gpu) out="$(build_training gpu)" ;;
            airflow) if ((cached)); then out="$(cached_airflow)"; else out="$(build_airflow)"; fi ;;
            *) log "unknown image ${target} (base, training-cpu, training-gpu, airflow)"; exit 2 ;;
        esac
    done
    printf '%s\n' "${out}"
}

main "$@"
