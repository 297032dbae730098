# b24app's image: gunicorn (the web process) by default; the same image runs the worker
# (`flask --app b24app worker`) and the release step (`flask --app b24app db upgrade`).
# compose.yaml and docs/deployment.md put them together. Only the product goes in: the wheel of
# b24app/ (with the migrations inside it) and its runtime dependencies at the versions of
# requirements.lock; no development portal, tests, benchmarks or development tools.

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY b24app ./b24app
COPY migrations ./b24app/migrations
# the pages' built CSS and JavaScript (static/, committed; b24app.static_folder finds it there)
COPY static ./b24app/static
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    B24APP_INSTANCE_PATH=/var/lib/b24app \
    PORT=5000
RUN groupadd --system --gid 10001 b24app \
    && useradd --system --uid 10001 --gid b24app --home-dir /var/lib/b24app --create-home \
        --shell /usr/sbin/nologin b24app
# requirements.lock pins every package, the development tools too: as constraints it pins the
# versions of what the wheel needs and installs nothing else.
COPY requirements.lock /tmp/requirements.lock
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --constraint /tmp/requirements.lock /tmp/wheels/b24app-*.whl \
    && rm -rf /tmp/wheels /tmp/requirements.lock
USER 10001:10001
WORKDIR /var/lib/b24app
EXPOSE 5000
# Alive: /healthz answers (health.py). The worker's and the release step's containers turn it
# off (compose.yaml): they serve no HTTP.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '5000'), timeout=4)"]
CMD ["gunicorn", "--config", "python:b24app.gunicorn_conf", "b24app:create_app()"]
