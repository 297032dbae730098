"""Delivery: the worker that takes stored calls out of the outbox and finishes them in Bitrix24.

- `params.py`    the Bitrix24 parameters of a call, decided at delivery time
- `outbox.py`    claiming due calls, leases, recording outcomes
- `batching.py`  a portal's calls as one batch (≤ 50 commands), and the answers per call
- `retry.py`     which failures are retried, backoff with jitter, when to give up
- `deliver.py`   one portal's round: look up uncertain calls, send, record
- `worker.py`    the loop, its thread pool and the `flask --app b24app worker` command
- `metrics.py`   counters and timings (log lines for now)
- `cli.py`       the `flask --app b24app calls …` group (`calls redeliver`)
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the `worker` command and the `calls` group."""
    from b24app.delivery import cli, worker

    worker.init_app(app)
    cli.init_app(app)
