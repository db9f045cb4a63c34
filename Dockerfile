# syntax=docker/dockerfile:1
# Hookkeeper: one image for `hookkeeper serve`, `mailer`, `gateway` and
# `migrate`. Multi-stage: build tools stay out of the runtime image, which
# runs as an unprivileged user.

# 1. GraphiQL assets for the gateway, from the versions pinned in package-lock.json.
FROM node:22-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY scripts/vendor-graphiql.sh scripts/
RUN mkdir -p gateway/hookkeeper/gateway && ./scripts/vendor-graphiql.sh

# 2. The Python package and its dependencies in a virtualenv.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/hookkeeper
COPY pyproject.toml README.md ./
# The build hook that refuses a wheel without GraphiQL's assets.
COPY scripts/hatch_build.py scripts/
COPY gen gen
COPY service service
COPY gateway gateway
COPY --from=assets /src/gateway/hookkeeper/gateway/static/graphiql gateway/hookkeeper/gateway/static/graphiql
RUN /opt/hookkeeper/bin/pip install .

# 3. Runtime: the virtualenv only, a non-root user, no compilers.
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 hookkeeper \
    && useradd --system --uid 10001 --gid hookkeeper --home-dir /var/lib/hookkeeper \
       --create-home --shell /usr/sbin/nologin hookkeeper \
    # Owned by the service user, so a named volume mounted here (compose's
    # generated certificates) is writable by it.
    && mkdir -p /var/lib/hookkeeper/certs && chown 10001:10001 /var/lib/hookkeeper/certs
COPY --from=build /opt/hookkeeper /opt/hookkeeper
ENV PATH=/opt/hookkeeper/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOOKKEEPER_VAR_DIR=/var/lib/hookkeeper \
    HOOKKEEPER_GRPC_LISTEN=0.0.0.0:50051 \
    HOOKKEEPER_GATEWAY_LISTEN=0.0.0.0:8080
# `serve` (and `dispatcher`) run one process per CPU the container may use,
# all on one port; HOOKKEEPER_WORKERS=1 runs one (docs/workers.md).
ENV HOOKKEEPER_WORKERS=0
USER 10001:10001
WORKDIR /var/lib/hookkeeper
EXPOSE 50051 8080
# gRPC health (the same check the compose file uses); the gateway overrides it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import grpc,sys; from grpc_health.v1 import health_pb2 as p, health_pb2_grpc as g; sys.exit(g.HealthStub(grpc.insecure_channel('127.0.0.1:50051')).Check(p.HealthCheckRequest(), timeout=2).status != p.HealthCheckResponse.SERVING)"]
CMD ["hookkeeper", "serve"]
