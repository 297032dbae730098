"""What a long-running process built at start-up, kept out of every later garbage collection.

A full (generation 2) collection walks every object the process tracks. Start-up leaves
~150,000 (modules, the app, its engine and mappers, schemas, translations) that live as long as
the process, so each full collection walked them again: ~60 ms alone, 87-278 ms measured in
the web processes under load and 94-158 ms in the delivery worker (docs/performance.md,
Intake, fifth pass). Meanwhile the process answers nobody, and on SQLite a thread of it holding
the write turn (db.Database.write) holds every process's writes as long: a PBX waited that long
for its 202. `gc.freeze` (the standard library's answer to exactly this) moves them to a
generation no collection walks; what requests and batches create is collected as before.

When hunting a leak in such a process: frozen objects are missing from `gc.get_objects()` and
`gc.get_referrers()`, so objgraph and the like miss them: `gc.unfreeze()` first.
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Collect start-up's garbage once, then freeze everything left (`gc.freeze`). Call it once
    the process has built what it keeps (gunicorn_conf.post_worker_init, the worker command)."""
    gc.collect()
    gc.freeze()
