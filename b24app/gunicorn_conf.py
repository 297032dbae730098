"""gunicorn settings for the `web:` process (`gunicorn --config python:b24app.gunicorn_conf`).

- Threads (gthread) rather than many processes: a request spends its time waiting on the database
  (and, for the installer and settings page, on Bitrix24), so threads keep memory low.
- The worker is gthread that reads each request whole before a thread runs it
  (b24app/web_worker.py): slow clients cannot hold the threads (issue 10, item 2).
- WEB_CONCURRENCY processes (default: 2 per core) × GUNICORN_THREADS threads (default 4). Each
  process has its own SQLAlchemy pool (db.py): keep processes × pool size under PostgreSQL's
  max_connections.
- The access log prints the path without the query string: /oauth/callback carries a `code`.
- The master checks the configuration before starting workers (`on_starting`).
- Each worker, once it has loaded the app, moves what start-up built out of the garbage
  collector's reach (`post_worker_init`, b24app/heap.py): a full collection then takes
  milliseconds instead of a fifth of a second, during which the process answers nobody.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "b24app.web_worker.BufferingThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 10_000
max_requests_jitter = 1_000
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def on_starting(server: Any) -> None:
    """Check the configuration once, in the master, before any worker starts: a wrong one is one
    message on stderr and exit 1, not a traceback from every worker that fails to boot."""
    from b24app.config import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as error:
        print(f"b24app: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def post_worker_init(worker: Any) -> None:
    """In each worker, once it loaded the app: start-up's objects out of every later garbage
    collection (heap.freeze_start_up: a full collection took 87-278 ms under load without it)."""
    from b24app.heap import freeze_start_up

    freeze_start_up()


def child_exit(server: Any, worker: Any) -> None:
    """Prometheus multiprocess mode: forget a dead worker's gauges (metrics.py)."""
    from b24app.metrics import mark_process_dead

    mark_process_dead(worker.pid)
