# One image for every role (operator, webhook, sidecar, Job steps, CronJob): `stash <command>`.
#   docker build -t <registry>/stash-py:<version> .
#   docker push <registry>/stash-py:<version>
#   (cd manifests && kustomize edit set image stash-py=<registry>/stash-py:<version>)
# No Docker engine runs on the development machines: there buildah builds this file, as it is,
# for the dev cluster's node (dev/devcluster/images.py), and the demo and the end-to-end tests run
# it in real pods. A unit test keeps the COPY list complete.

# The project's one restic, pinned (dev/devcluster/build.py RESTIC_VERSION says the same; a unit
# test keeps them equal): a static Go binary, copied out of restic's own image.
FROM docker.io/restic/restic:0.18.1 AS restic

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY kube kube
COPY certs certs
COPY engine engine
COPY pods pods
COPY agent agent
COPY webhook webhook
COPY controller controller
COPY cli cli
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# pg_dump/psql for the PostgreSQL example Task.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=restic /usr/bin/restic /usr/local/bin/restic
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The manifests' runAsUser; HOME on the tmp emptyDir (the root filesystem is read-only).
USER 65532:65532
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["stash"]
