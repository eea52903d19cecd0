# Milepost in one image: the node (`serve`), the dashboard, `migrate` and the other commands.
#
#   docker build -t milepost:local .
#   docker run --rm milepost:local --help
#
# The default command serves on 127.0.0.1 inside the container with embedded ClickHouse in
# /var/lib/milepost: the node refuses to listen beyond loopback until auth tokens are configured.
# docker-compose.yml shows a full deployment (ClickHouse server, tokens, --host 0.0.0.0).
#
# Only the classic-builder subset of Dockerfile syntax is used, so Debian's docker-compose 1.29
# (which builds without BuildKit) builds it too.

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/milepost
WORKDIR /src
COPY . .
RUN /opt/milepost/bin/pip install . \
    && /opt/milepost/bin/milepost --help >/dev/null


FROM ${PYTHON_IMAGE}

# A fixed uid/gid so volumes and bind mounts can be prepared for it outside the container.
RUN groupadd --system --gid 10001 milepost \
    && useradd --system --uid 10001 --gid milepost --home-dir /home/milepost --create-home \
        --shell /usr/sbin/nologin milepost \
    && mkdir -p /var/lib/milepost /etc/milepost \
    && chown milepost:milepost /var/lib/milepost

# Same base image and same path as the build stage, so the virtualenv runs as it is.
COPY --from=build /opt/milepost /opt/milepost

ENV PATH=/opt/milepost/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

USER milepost
WORKDIR /var/lib/milepost

# The write-ahead log (acknowledged data not yet in storage) and, with embedded ClickHouse, the
# database itself: losing this volume loses acknowledged data.
VOLUME ["/var/lib/milepost"]

# 4318 HTTP (OTLP/HTTP, CloudEvents, query API, health), 4317 OTLP/gRPC, 8501 dashboard.
EXPOSE 4318 4317 8501

ENTRYPOINT ["milepost"]
CMD ["serve", "--data-dir", "/var/lib/milepost"]
