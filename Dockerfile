# syntax=docker/dockerfile:1
# The audiosync images (README, "Container image"; tests/unit/deploy/test_dockerfile.py checks
# this file's facts against the project):
#   --target fleet         the worker fleet, beat, Flower, the exporter and the operator
#                          CLI: `.[fleet]`, no opuslib, no libopus (the fleet never decodes).
#                          ENTRYPOINT ["celery", "-A", "workers"], CMD: a worker of the
#                          `audiosync` queue; give beat / flower / audiosync ... as args.
#   --target pusher-tools  the spool drainer: `.[pusher]` and libopus0.
#                          ENTRYPOINT ["python", "-m", "backend_hooks.spool_cli"],
#                          CMD ["drain", "--watch"].
#   --target backfill      workers of the `audiosync.backfill` queue (and the operator's
#                          in-process `audiosync backfill`): `.[fleet,reader]` and libopus0;
#                          they hold ENCRYPTION_SECRET, the flush fleet never does.
#                          ENTRYPOINT ["celery", "-A", "workers"], CMD: a worker of
#                          `audiosync.backfill`.
# `fleet` is the last stage: a build without --target gives it.
# Pin the base further with a digest: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the project's wheel and a wheel of every dependency of the three images
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml LICENSE ./
COPY backend_hooks/ backend_hooks/
COPY workers/ workers/
RUN pip wheel --wheel-dir /wheels '.[fleet,pusher,reader]'

# ---- what the runtime images share: the environment and the numeric non-root user
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A passwd entry for uid 10001 (libraries that ask for the user name find one); no home:
# the root filesystem may be read-only, and everything written goes to /tmp (an emptyDir
# in the chart: beat's --schedule, PROMETHEUS_MULTIPROC_DIR's default).
RUN groupadd --system --gid 10001 audiosync \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin audiosync
WORKDIR /tmp
LABEL org.opencontainers.image.title="audiosync" \
      org.opencontainers.image.licenses="MIT"

# ---- libopus for the images that encode or decode Opus (never the fleet's)
FROM runtime AS runtime-opus
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopus0 \
    && rm -rf /var/lib/apt/lists/*

# ---- pusher-tools: the spool drainer, beside the backend's pushers on the spool volume
FROM runtime-opus AS pusher-tools
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels 'audiosync[pusher]'
USER 10001:10001
ENTRYPOINT ["python", "-m", "backend_hooks.spool_cli"]
CMD ["drain", "--watch"]

# ---- backfill: compacting legacy objects decodes and re-encodes Opus, with the key
FROM runtime-opus AS backfill
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels 'audiosync[fleet,reader]'
USER 10001:10001
ENTRYPOINT ["celery", "-A", "workers"]
CMD ["worker", "--loglevel=INFO", "--queues=audiosync.backfill"]

# ---- fleet: workers, beat, Flower, the exporter, `celery -A workers audiosync ...`
FROM runtime AS fleet
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels 'audiosync[fleet]'
USER 10001:10001
# 9808: AUDIOSYNC_METRICS_PORT's usual value (workers, exporter); 5555: Flower.
EXPOSE 9808 5555
ENTRYPOINT ["celery", "-A", "workers"]
CMD ["worker", "--loglevel=INFO", "--queues=audiosync"]
