"""Token refresh under contention: 200 calls from 4 processes × 10 threads, all tokens expired.

Prints how many refreshes reached the OAuth server (goal: exactly 1, no invalid_grant) and the
calls' latency, next to the same 200 calls with valid tokens in the same run (the baseline).

    .venv/bin/python -m benchmarks.refresh_race [--database-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import update

from b24app.db import get_db
from b24app.models import PortalThrottle
from b24app.portals import store
from benchmarks.environment import percentile, world
from devportal import faults

PROCESSES, THREADS, CALLS_PER_PROCESS = 4, 10, 50


def timed_calls(settings_values: dict[str, Any], member_id: str) -> list[tuple[str, float]]:
    from b24app import create_app
    from b24app.bitrix.errors import BitrixError
    from b24app.config import load_settings
    from b24app.wiring import store_of

    app = create_app(load_settings(_env_file=None, **settings_values))

    def one(_: int) -> tuple[str, float]:
        started = time.perf_counter()
        try:
            store_of(app).client(member_id).result("user.admin")
            outcome = "ok"
        except BitrixError as error:
            outcome = error.code
        return outcome, time.perf_counter() - started

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(CALLS_PER_PROCESS)))


def fresh_schedule(app: Any) -> None:
    """Give the portal its whole burst again, so rounds measure tokens, not our throttle."""
    with app.app_context(), get_db().write() as session:
        session.execute(update(PortalThrottle).values(theoretical_arrival=0.0))


def run_round(pool: Any, values: dict[str, Any], member_id: str) -> tuple[list, float]:
    started = time.perf_counter()
    jobs = [pool.apply_async(timed_calls, (values, member_id)) for _ in range(PROCESSES)]
    results = [r for job in jobs for r in job.get(timeout=300)]
    return results, time.perf_counter() - started


def report(label: str, results: list[tuple[str, float]], wall: float) -> None:
    ok = sum(1 for outcome, _ in results if outcome == "ok")
    latencies = [latency * 1000 for _, latency in results]
    print(
        f"{label:<22} calls {len(results)}  ok {ok}  wall {wall:6.2f} s  "
        f"p50 {percentile(latencies, 0.5):7.1f} ms  p99 {percentile(latencies, 0.99):7.1f} ms  "
        f"max {max(latencies):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with world(args.database_url) as w:
        portal = w.install("race")
        portal.bucket.burst = 100_000  # measure tokens, not the rate limit
        with w.app.app_context(), get_db().write() as session:
            store.find_portal(session, portal.member_id).enterprise_limits = True
        context = multiprocessing.get_context("spawn")
        with context.Pool(PROCESSES) as pool:
            run_round(pool, w.settings_values, portal.member_id)  # warm the processes up
            fresh_schedule(w.app)
            baseline, baseline_wall = run_round(pool, w.settings_values, portal.member_id)
            before = len([e for e in w.devportal.state.journal if e.get("oauth")])
            faults.expire_tokens(w.devportal.state, portal)
            fresh_schedule(w.app)
            raced, raced_wall = run_round(pool, w.settings_values, portal.member_id)
        grants = [e for e in w.devportal.state.journal if e.get("oauth")][before:]
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print(f"refresh race on {backend}: {PROCESSES} processes x {THREADS} threads")
        report("valid tokens (baseline)", baseline, baseline_wall)
        report("all tokens expired", raced, raced_wall)
        errors = [g["error"] for g in grants if g["error"]]
        print(f"refreshes at the OAuth server: {len(grants)}  errors: {errors or 'none'}")
        print(f"wall-time ratio expired/baseline: {raced_wall / baseline_wall:.2f}")


if __name__ == "__main__":
    main()
