FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RELAY_HOST=0.0.0.0 RELAY_PORT=8080 \
    RELAY_ROUTES=/app/routes.yaml \
    RELAY_DATABASE_URL=sqlite:////data/relay.db RELAY_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN pip install --no-cache-dir . && useradd --system --uid 10001 --home /data relay \
    && mkdir -p /data && chown relay /data
COPY routes.yaml ./

USER relay
VOLUME ["/data"]
EXPOSE 8080
# RELAY_WEBHOOK_TOKEN must be set: relay refuses a non-loopback address without one.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["relay", "serve"]
