"""A small in-process stand-in for a portal's client, for delivery tests that need no HTTP: it
runs a batch's telephony commands against a dictionary and can end each request the ways
bitrix/errors.Ending names (raise before running, or run and then fail). The development portal
(devportal/) stays the faithful emulation; this only answers what delivery asks
(deliver.Portal24)."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from b24app.bitrix.client import BatchResult
from b24app.delivery.batching import FINISH, REGISTER, STATISTICS


@dataclass
class FakePortal:
    """Answers `batch` and `probe` as a portal would, after `before` and `after` behaviours
    for the next requests (an exception in `before` means it never ran, in `after` that it ran
    and then the answer was lost)."""

    before: list[BaseException | None] = field(default_factory=list)
    after: list[BaseException | None] = field(default_factory=list)
    probe_fails: BaseException | None = None
    registered: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: Counter[str] = field(default_factory=Counter)  # by CALL_ID
    records: list[dict[str, Any]] = field(default_factory=list)
    requests: list[list[str]] = field(default_factory=list)  # each batch's methods
    probes: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def batch(
        self,
        commands: dict[str, tuple[str, dict[str, Any]]],
        *,
        halt: bool = False,
        state: Any = None,
        send_at: float | None = None,
    ) -> BatchResult:
        self.requests.append([method for method, _ in commands.values()])
        if self.before and (error := self.before.pop(0)) is not None:
            raise error
        result = BatchResult(result={}, errors={})
        for key, (method, params) in commands.items():
            result.result[key] = self._run(method, params, result.result)
        if self.after and (error := self.after.pop(0)) is not None:
            raise error
        return result

    def probe(self, *, timeout: float, revive: tuple[str, ...] = ()) -> dict[str, Any]:
        self.probes += 1
        if self.probe_fails is not None:
            raise self.probe_fails
        return {"result": {"ID": 1}}

    def _run(self, method: str, params: dict[str, Any], done: dict[str, Any]) -> Any:
        if method == REGISTER:
            call_id = f"fake.{next(self._ids)}"
            self.registered[call_id] = params
            return {"CALL_ID": call_id}
        if method == FINISH:
            call_id = _resolve(params["CALL_ID"], done)
            self.finished[call_id] += 1
            external = (self.registered.get(call_id) or {}).get("EXTERNAL_CALL_ID")
            record = {"CALL_ID": call_id, "EXTERNAL_CALL_ID": external, "CALL_DURATION": 1}
            self.records.append(record)
            return record
        if method == STATISTICS:
            wanted = params["FILTER"]
            return [r for r in self.records if all(r.get(k) == v for k, v in wanted.items())]
        raise AssertionError(f"the fake does not know {method}")


def _resolve(value: str, done: dict[str, Any]) -> str:
    """`$result[r12][CALL_ID]` → the CALL_ID an earlier command of the batch returned."""
    if value.startswith("$result["):
        key = value[len("$result[") :].split("]")[0]
        return str(done[key]["CALL_ID"])
    return value
