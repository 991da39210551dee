# One image for every role (operator, webhook, sidecar, Job steps, CronJob): `stash <command>`.
# Build: docker build -t <registry>/stash-py:<version> .   (no Docker engine runs on the dev
# machines, so this file is not built by CI yet; the demo runs the same commands locally.)

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY kube kube
COPY certs certs
COPY devcluster devcluster
COPY cli cli
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# restic (and pg_dump/psql for the PostgreSQL Task) from Debian, pinned by the base image's release.
RUN apt-get update \
    && apt-get install -y --no-install-recommends restic ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532:65532
ENTRYPOINT ["stash"]
