#!/usr/bin/env bash
# Wheels for DeepSpeed on the GPU host (which has no package index): DeepSpeed ships only a source package, so
# it is built here as a pure-Python wheel (DS_BUILD_OPS=0: its CUDA ops compile on the host with nvcc when
# first used), plus the dependencies the host lacks.  Carry the folder (.whl-ds, ignored by git) and
# `bash bench/gpu_multi.sh sharded` installs it.
#   bash bench/make_deepspeed_wheels.sh [OUT_DIR]       (needs the project's .venv, with torch, for the build)
set -euo pipefail
out=${1:-.whl-ds}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out" /tmp/ds-sdist
"$python" -m pip download --no-deps --no-binary :all: deepspeed==0.19.8 -d /tmp/ds-sdist
DS_BUILD_OPS=0 "$python" -m pip wheel --no-deps --no-build-isolation /tmp/ds-sdist/deepspeed-0.19.8.tar.gz -w "$out"
"$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$out" \
  hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing-extensions==4.16.0
