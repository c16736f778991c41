# The image deploy/kubernetes/ runs: mcp-agg installed from this repository, run as a
# non-root user, serving streamable HTTP on port 8000. Build it from the repository root:
#   docker build -t mcp-agg:0.1.0 .
# (docs/fleet.md: no Docker engine runs where this project is developed, so this file is
# kept minimal and is checked by tests/deploy/test_manifests.py, not built, there.)
FROM python:3.11-slim

# Nothing writes .pyc files at run time (the root filesystem is read-only in Kubernetes);
# logs reach `kubectl logs` unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# The demo backends (deploy/kubernetes/configmap.yaml serves units from here).
COPY examples ./examples
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mcp-agg

USER 10001
EXPOSE 8000
CMD ["mcp-agg", "serve", "--config", "/etc/mcp-agg/servers.toml", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
