# syntax=docker/dockerfile:1
# vault-proxy server image. Quick start (docs/deployment.md has the rest):
#
#   docker build -t vault-proxy .
#   docker run -d --name vault-proxy -p 127.0.0.1:8390:8390 -v vault-data:/data vault-proxy
#   docker logs vault-proxy          # shows the TLS certificate's SHA-256 fingerprint
#
# The server listens on 0.0.0.0:8390 inside the container, which vault-server allows only with TLS:
# on first start the entrypoint makes a self-signed certificate in /data/tls (kept in the volume,
# reused afterwards), unless you bring your own (/data/tls/{cert,key}.pem or VAULT_PROXY_TLS_CERT/KEY).
FROM python:3.11-slim

# openssl: the entrypoint generates the self-signed certificate with it. Unpinned on purpose: the
# version is whatever security update the base image's Debian release currently ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*

# Only what the package build needs (.dockerignore keeps the rest out of the context).
WORKDIR /tmp/vault-proxy-src
COPY pyproject.toml README.md ./
COPY src ./src
# The 'speed' extra adds uvloop, which vault-server uses when installed.
RUN pip install --no-cache-dir "./[speed]" \
    && rm -rf /tmp/vault-proxy-src

COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY --chmod=0755 deploy/docker-healthcheck.py /usr/local/bin/vault-proxy-healthcheck

# A fixed non-root uid (bind-mounted data directories must be writable by it: chown 10001).
RUN groupadd --system --gid 10001 vault \
    && useradd --system --uid 10001 --gid vault --home-dir /home/vault --create-home \
        --shell /usr/sbin/nologin vault \
    && install -d -o 10001 -g 10001 -m 0700 /data

WORKDIR /home/vault
ENV VAULT_PROXY_LISTEN=0.0.0.0:8390 \
    VAULT_PROXY_DATA_DIR=/data \
    VAULT_ADDR=https://127.0.0.1:8390 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8390

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["vault-proxy-healthcheck"]

ENTRYPOINT ["docker-entrypoint.sh"]
