#!/usr/bin/env bash
# The README's first command: run the DAG end to end, offline, with real training.
#
# Builds (or reuses) the Airflow venv, the training venv and the training image, then runs
# dev/run_local.py: a throwaway PostgreSQL campaign DB, the local AWS emulator whose
# SageMaker jobs train the real entry point (Horovod, CPU) on each region's generated
# TFRecords, and Airflow's real services (PostgreSQL metadata DB, api-server,
# scheduler with LocalExecutor, dag-processor, triggerer, and their log server on
# 127.0.0.1: dev/log_server.py); it triggers a run through
# the REST API, follows it per region and prints the run's summary. Everything it
# starts is stopped on exit (also on Ctrl-C). Arguments go to dev/run_local.py
# (--help; --fake-training for the stand-in entry point; --serve to keep the UI up;
# --dags-test for `airflow dags test`; --conf '{"regions": ["eu-west-1"]}').
# --executor celery: Redis broker, two schedulers, two triggerers and two Celery
# workers, each worker in a network namespace of its own (root; docs/services.md).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

airflow_python="$("${repo}/scripts/bootstrap.sh" | tail -n1)"
fake=false
previous=""
for arg in "$@"; do
    [[ "${arg}" == "--fake-training" ]] && fake=true
    # The Celery stack's broker: Debian's redis-server, installed when missing.
    if [[ "${arg}" == "--executor=celery" || ( "${previous}" == "--executor" && "${arg}" == "celery" ) ]]; then
        bash "${repo}/scripts/ensure_debian_packages.sh" redis-server redis-server
    fi
    previous="${arg}"
done
if [[ "${fake}" == false ]]; then
    # First time: builds TensorFlow + Horovod (a few minutes); afterwards instant.
    train_python="$("${repo}/scripts/setup_training_env.sh" | tail -n1)"
    export MRT_TRAIN_PYTHON="${train_python}"
    # The training image users deploy (CPU variant of images/training/Dockerfile, built
    # with podman and cached by its inputs): every emulated job runs `<image> train`
    # in it, as SageMaker does (docs/images.md). MRT_TRAINING_IMAGE= (empty) keeps the
    # namespace launch over the training venv, e.g. where podman cannot run.
    if [[ -z "${MRT_TRAINING_IMAGE+set}" ]]; then
        MRT_TRAINING_IMAGE="$("${repo}/scripts/build_images.sh" training-cpu | tail -n1)"
    fi
    export MRT_TRAINING_IMAGE
fi
PATH="$(dirname "${airflow_python}"):${PATH}"
export PATH

cd "${repo}"
# From the repository root, so `dev` imports as a package (dev/run_local.py).
exec "${airflow_python}" -m dev.run_local "$@"
