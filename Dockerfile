# Production images (the path the README documents; no Docker engine runs on
# the development machines, so this file is checked by reading and by
# `docker compose config`).
#
#   app  — web, Celery default/eval workers and beat. Pass
#          --build-arg PIP_EXTRA_INDEX_URL=<your CPU torch wheel index> to keep
#          the image small; from plain PyPI, torch brings its CUDA libraries.
#   gpu  — the training worker: CUDA toolkit (DeepSpeed compiles its fused
#          ops with nvcc) on the NVIDIA container runtime.

FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    VAR_DIR=/data/var MEDIA_ROOT=/data/media ARTIFACTS_ROOT=/data/artifacts
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libaio-dev pdsh openssh-client \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ARG PIP_EXTRA_INDEX_URL=""
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home workbench && mkdir -p /data && chown workbench /data
USER workbench
EXPOSE 8000
# The same flags as webapp/lib/webserver.py; WEB_CONCURRENCY (uvicorn reads it) sets the worker processes.
CMD ["python", "-m", "uvicorn", "webapp.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--backlog", "1024", "--lifespan", "off", "--http", "httptools", "--loop", "uvloop", "--ws", "websockets"]

FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04 AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    VAR_DIR=/data/var MEDIA_ROOT=/data/media ARTIFACTS_ROOT=/data/artifacts \
    PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-dev python3-pip python-is-python3 \
      build-essential libaio-dev pdsh openssh-client \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home workbench && mkdir -p /data && chown workbench /data
USER workbench
CMD ["python", "-m", "celery", "-A", "webapp", "worker", "-Q", "gpu", "-c", "1", "-n", "gpu@%h", "-l", "info"]
