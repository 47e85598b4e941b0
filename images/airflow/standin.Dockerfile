# Stand-in for apache/airflow:3.3.2-python3.11, built only where Docker Hub cannot be
# reached (scripts/build_images.sh airflow; this project's CI). It copies what
# images/airflow/Dockerfile relies on from the official image: python.org's CPython 3.11
# in /usr/local (the official image is built on python:3.11-slim-bookworm), the
# `airflow` user (uid 50000, gid 0), AIRFLOW_HOME=/opt/airflow, pip installing into the
# user's site (PIP_USER=true, ~/.local/bin on PATH), and apache-airflow 3.3.2
# preinstalled. What differs is in docs/images.md.
#
# The interpreter: python.org's CPython cannot be downloaded here (python.org and the
# python-build-standalone releases are unreachable) and Debian 12's python3.11 is 3.11.2,
# too old for the pinned set (soupsieve 4.1.3 needs >= 3.11.5: the reason pip backtracked
# for minutes on the Debian one). So scripts/build_images.sh binds the build host's own
# CPython 3.11 (the one the CI venv uses, necessarily >= 3.11.5) at /tmp/host-python, and
# its interpreter, shared library and standard library (not its site-packages) are
# copied to /usr/local, where the python image has them.
FROM docker.io/library/debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The shared libraries CPython's extension modules load (the python image's runtime set)
# and libpq5, psycopg2's client library (the official Airflow image ships it too).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates netbase tzdata libpq5 \
        libssl3 libffi8 libsqlite3-0 libbz2-1.0 liblzma5 libreadline8 libncursesw6 zlib1g \
        libuuid1 libgdbm6 libexpat1 \
    && rm -rf /var/lib/apt/lists/* \
    && test -x /tmp/host-python/bin/python3.11 \
    && cp -a /tmp/host-python/bin/python3.11 /usr/local/bin/ \
    && cp -a /tmp/host-python/lib/libpython3.11.so* /usr/local/lib/ \
    && tar -C /tmp/host-python -c --exclude=lib/python3.11/site-packages \
        --exclude='__pycache__' lib/python3.11 include/python3.11 | tar -C /usr/local -x \
    && mkdir -p /usr/local/lib/python3.11/site-packages \
    && ldconfig \
    && ln -s python3.11 /usr/local/bin/python3 && ln -s python3.11 /usr/local/bin/python \
    && python -m ensurepip --default-pip \
    && python -c 'import ssl, sqlite3, ctypes, bz2, lzma, zlib, uuid, readline, sys; \
assert sys.version_info >= (3, 11, 5), sys.version; print(sys.version)' \
    && useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow airflow \
    && mkdir -p /opt/airflow && chown airflow:0 /opt/airflow

ENV AIRFLOW_HOME=/opt/airflow \
    AIRFLOW_USER_HOME_DIR=/home/airflow \
    PIP_USER=true \
    PATH=/home/airflow/.local/bin:$PATH

# The CA bundle pip trusts (scripts/build_images.sh passes the host's; build-time only).
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY requirements/constraints.txt /tmp/constraints.txt
USER 50000
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -c /tmp/constraints.txt
WORKDIR /opt/airflow
LABEL org.mrt.stand-in=apache/airflow:3.3.2-python3.11
