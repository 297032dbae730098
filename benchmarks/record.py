"""The worker's record of one share: CPU and wall time of `outbox.record` for 500 delivered calls.

A share of one busy portal is up to 10 batches of 50 commands; recording its outcomes is one
write transaction (delivery/outbox.record). This measures it alone, on a real outcome: 500 ended
calls are queued through the intake and delivered once by the real worker (latency 0), whose
`record` arguments are kept; then the calls are put back as that worker left them before its
record (leased to it, events queued) and recorded again, REPEAT times, by:

- b24app's record as it is (on PostgreSQL the rows' varying columns go as arrays in one
  `UPDATE … FROM (SELECT unnest …)`, outbox._update_unnested);
- the baseline: the same record with those columns as one executemany of single-row UPDATEs
  (SQLAlchemy's plain way, what b24app did before), alternating with the first in the same run.

Printed: median CPU (this thread) and wall per record, and the ratio. The database server's own
CPU is in the wall time, not in the CPU.

    .venv/bin/python -m benchmarks.record [--database-url postgresql+psycopg://…] [--calls 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from b24app.db import Database, get_db
from b24app.delivery import outbox
from b24app.delivery.worker import Worker
from b24app.models import Call, CallEvent, CallState, EventState
from benchmarks.delivery import OPEN_DOOR, prepare
from benchmarks.environment import world

REPEAT = 15  # records per way, alternating


def executemany_update(
    session: Session, table: Any, rows: Sequence[Mapping[str, Any]], *where: Any
) -> None:
    """The baseline `_update_by_id`: each group's varying columns as one executemany."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(key for key in row if key != "id")), []).append(row)
    for keys, group in groups.items():
        same = {key: group[0][key] for key in keys if all(r[key] == group[0][key] for r in group)}
        varying = [key for key in keys if key not in same]
        if varying:
            statement = (
                update(table)
                .where(table.c.id == bindparam("b_id"), *where)
                .values({key: bindparam(f"b_{key}") for key in varying})
            )
            params = [{"b_id": r["id"], **{f"b_{key}": r[key] for key in varying}} for r in group]
            session.execute(statement, params)
        if same:
            ids = [row["id"] for row in group]
            session.execute(update(table).where(table.c.id.in_(ids), *where).values(same))


@contextmanager
def kept_records() -> Iterator[list[tuple[Any, ...]]]:
    """The arguments of every `outbox.record` the worker makes meanwhile."""
    kept: list[tuple[Any, ...]] = []
    real = outbox.record

    def keep(db: Database, outcomes: Any, claimed: Any, *, worker_id: str, now: Any) -> int:
        kept.append((dict(outcomes), dict(claimed), worker_id, now))
        return real(db, outcomes, claimed, worker_id=worker_id, now=now)

    outbox.record = keep  # type: ignore[assignment]
    try:
        yield kept
    finally:
        outbox.record = real  # type: ignore[assignment]


def put_back(db: Database, ids: list[int], worker_id: str) -> None:
    """The calls as the worker left them before its record: leased to it, events queued."""
    with db.write() as session:
        session.execute(
            update(Call)
            .where(Call.id.in_(ids))
            .values(state=CallState.DELIVERING, leased_by=worker_id)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(CallEvent)
            .where(CallEvent.call_id.in_(ids))
            .values(state=EventState.QUEUED)
            .execution_options(synchronize_session=False)
        )


def measure(db: Database, record: tuple[Any, ...], way: Callable[..., None]) -> tuple[float, float]:
    """(CPU, wall) seconds of one record written with `way` as outbox._update_by_id."""
    outcomes, claimed, worker_id, now = record
    put_back(db, list(outcomes), worker_id)
    real = outbox._update_by_id
    outbox._update_by_id = way  # type: ignore[assignment]
    try:
        cpu, wall = time.thread_time(), time.perf_counter()
        outbox.record(db, outcomes, claimed, worker_id=worker_id, now=now)
        return time.thread_time() - cpu, time.perf_counter() - wall
    finally:
        outbox._update_by_id = real  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"record benchmark on {backend}; load average {os.getloadavg()[0]:.1f}")
    with world(args.database_url, **OPEN_DOOR) as w:
        portal = w.install("record")
        prepare(w, [portal], args.calls, 0.0, quiet=True)
        w.quiet_spell(portal)
        with kept_records() as kept:
            Worker(w.app, threads=1).run(once=True)
        record = max(kept, key=lambda k: len(k[0]))  # the share with the most calls
        db = get_db(w.app)
        ways = {"b24app": outbox._update_by_id, "executemany": executemany_update}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(REPEAT):
            for name, way in ways.items():
                times[name].append(measure(db, record, way))
    calls = len(record[0])
    medians = {
        name: (statistics.median(c for c, _ in t), statistics.median(x for _, x in t))
        for name, t in times.items()
    }
    for name, (cpu, wall) in medians.items():
        shown = f"CPU {cpu * 1e3:.1f} ms, wall {wall * 1e3:.1f} ms"
        print(f"  {name:12s} record of {calls} calls: {shown}")
    ours, base = medians["b24app"], medians["executemany"]
    print(f"  b24app / executemany: CPU {ours[0] / base[0]:.2f}, wall {ours[1] / base[1]:.2f}")


if __name__ == "__main__":
    main()
