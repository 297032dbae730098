"""The PBX simulator (`flask --app b24app pbx simulate`, b24app/pbx/simulate.py) against a live
b24app, what `make run` tells the newcomer about it, and the development portal's telephony page
that shows the calls as Bitrix24 saw them (issue 12, items 6 and 7; issue 14, item 7)."""

from __future__ import annotations

import json
import wave
from collections import Counter
from io import BytesIO
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from b24app.delivery.worker import Worker
from b24app.pbx import simulate
from devportal import devrun
from devportal.server import DevportalServer
from devportal.state import DevState, install
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.security import pbx_key

# --- the simulator against a live b24app ------------------------------------------------------


@pytest.fixture
def alpha_key(live_app: LiveApp) -> str:
    """Portal "alpha" (the development portal's seeded employees) with our app; its PBX key."""
    portal = live_app.install("alpha")
    return pbx_key(live_app, portal.member_id)


def test_thirty_seeded_calls_are_all_accepted_once_each(live_app: LiveApp, alpha_key: str):
    summary = simulate.play(
        live_app.url, alpha_key, simulate.Options(calls=30, seed=12, rate=0, gap=0, late_delay=0.1)
    )

    assert summary.problems == []
    assert summary.calls == 30
    assert summary.by_status == {"202": summary.events_sent}
    assert summary.conflicts == summary.server_errors == summary.unexpected_4xx == 0
    assert summary.ok
    ids = [result.id for result in summary.call_results]
    assert all(result.ids_consistent for result in summary.call_results)
    assert None not in ids and len(set(ids)) == 30  # one id per call, the same for its events
    # the mix a real PBX sends: every event kind, and some repeated, late and out of order
    assert set(summary.by_kind) == {"start", "ring", "answer", "finish", "record"}
    assert summary.repeated > 0 and summary.late > 0 and summary.out_of_order > 0
    assert {"answered", "missed", "ring_group"} <= set(summary.scenarios)


def test_each_call_answers_its_id_on_the_pbx_api(live_app: LiveApp, alpha_key: str):
    summary = simulate.play(
        live_app.url, alpha_key, simulate.Options(calls=3, seed=1, rate=0, disorder=0)
    )

    for result in summary.call_results:
        answer = requests.get(
            f"{live_app.url}/pbx/v1/calls/{result.id}",
            headers={"Authorization": f"Bearer {alpha_key}"},
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.json()["id"] == result.id


def test_command_prints_the_summary_as_json(live_app: LiveApp, alpha_key: str):
    result = CliRunner().invoke(
        simulate.simulate_command,
        ["--url", live_app.url, "--calls", "5", "--seed", "3", "--rate", "0", "--json"],
        env={"B24APP_PBX_KEY": alpha_key},
    )

    assert result.exit_code == 0, result.stdout
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["calls"] == 5 and summary["conflicts"] == 0
    assert [call["pbx_call_id"] for call in summary["calls_played"]] == [
        f"{summary['calls_played'][0]['pbx_call_id'].rsplit('-', 1)[0]}-{n}" for n in range(1, 6)
    ]


def test_command_exits_non_zero_when_the_key_is_refused(live_app: LiveApp, alpha_key: str):
    result = CliRunner().invoke(
        simulate.simulate_command,
        ["--url", live_app.url, "--calls", "2", "--key", "not-a-key", "--rate", "0"],
    )

    assert result.exit_code == 1
    statuses = next(line for line in result.stdout.splitlines() if "by HTTP status" in line)
    assert statuses.startswith("answers by HTTP status: 401: ") and "," not in statuses
    assert "401 " in result.stdout and result.stdout.rstrip().endswith("FAILED")


def test_command_without_a_key_says_how_to_get_one():
    result = CliRunner().invoke(simulate.simulate_command, ["--calls", "1"], env={})

    assert result.exit_code == 2
    assert "--key" in result.output and "B24APP_PBX_KEY" in result.output


def test_a_bad_scenario_name_is_refused_by_name():
    result = CliRunner().invoke(
        simulate.simulate_command, ["--key", "k", "--mix", "answered=2,hold=1"]
    )

    assert result.exit_code == 2
    assert "unknown scenario 'hold'" in result.output


# --- the plan, without a server ---------------------------------------------------------------


def plan(**options: Any) -> list[simulate.PlannedCall]:
    planner = simulate.Planner(simulate.Options(**options), record_base="http://127.0.0.1:1")
    return [planner.plan(i) for i in range(options.get("calls", 20))]


def test_a_seed_gives_the_same_calls():
    first, second = plan(calls=20, seed=5), plan(calls=20, seed=5)

    assert [c.scenario for c in first] == [c.scenario for c in second]
    assert [[e.kind for e in c.events] for c in first] == [
        [e.kind for e in c.events] for c in second
    ]


def test_calls_follow_their_scenario_in_order_without_disorder():
    for call in plan(calls=60, seed=2, disorder=0):
        kinds = [event.kind for event in call.events]
        assert kinds[0] == "start" and "finish" in kinds
        assert kinds == sorted(
            kinds, key=["start", "ring", "answer", "finish", "record"].index
        ) or (
            call.scenario == "transfer"
            and kinds[:6] == ["start", "ring", "answer", "ring", "answer", "finish"]
        )
        finish = next(e for e in call.events if e.kind == "finish").fields
        answers = [e.fields for e in call.events if e.kind == "answer"]
        if call.scenario in ("answered", "ring_group", "transfer"):
            assert finish["STATUS_CODE"] == "ANSWER" and finish["DURATION"] > 0
            (employee,) = [v for k, v in answers[-1].items() if k != "PBX_CALL_ID"]
            assert call.user == str(employee)  # the last to answer is the finish's user
        if call.scenario == "transfer":
            assert answers[0] != answers[1]  # a second answer by someone else
        if call.scenario in ("missed", "busy"):
            assert finish["STATUS_CODE"] in ("NOANSWER", "BUSY") and finish["DURATION"] == 0
            start = call.events[0].fields
            assert answers == [] and call.user == str(start.get("USER_PHONE_INNER"))
    assert {c.scenario for c in plan(calls=60, seed=2)} == set(simulate.SCENARIOS)


def test_a_ring_group_rings_several_employees_at_once():
    groups = [c for c in plan(calls=40, seed=4, disorder=0) if c.scenario == "ring_group"]

    assert groups
    for call in groups:
        ring = next(e for e in call.events if e.kind == "ring").fields
        assert isinstance(ring["USER_PHONE_INNER"], list) and len(ring["USER_PHONE_INNER"]) >= 2


def test_recordings_are_wav_files_or_urls_in_turn():
    calls = plan(calls=30, seed=6, recordings="both", disorder=0)
    records = [e for c in calls for e in c.events if e.kind == "record"]

    assert {"url", "upload"} == {c.recording for c in calls if c.recording}
    for record in records:
        if record.file is not None:
            with wave.open(BytesIO(record.file[1])) as audio:
                assert audio.getframerate() == 8000 and audio.getnframes() > 0
        else:
            assert record.fields["RECORD_URL"].startswith("http://127.0.0.1:1/rec/")


def test_the_recordings_server_serves_a_wav():
    with simulate.recordings_server() as base:
        answer = requests.get(f"{base}/rec/0.3/x.wav", timeout=5)
        missing = requests.get(f"{base}/other", timeout=5)

    assert answer.status_code == 200 and answer.headers["Content-Type"] == "audio/wav"
    with wave.open(BytesIO(answer.content)) as audio:
        assert audio.getnframes() == 2400  # 0.3 s at 8 kHz
    assert missing.status_code == 404


# --- make run's banner ------------------------------------------------------------------------


def test_the_banner_sends_a_new_call_each_run_and_shows_the_simulator():
    first, second = devrun.first_call(), devrun.first_call()
    banner = devrun._banner("KEY-123", installed=True)

    assert first["PBX_CALL_ID"] != second["PBX_CALL_ID"]  # issue 14 item 7: not "demo-1"
    assert "demo-1" not in banner
    assert "pbx simulate --key KEY-123" in banner
    assert "B24APP_ENV" not in banner  # make run's settings are found (issue 14 item 8)
    assert "/p/alpha/telephony/" in banner


# --- the development portal's telephony page -----------------------------------------------------


def rest(server: DevportalServer, token: str, method: str, **params: Any) -> Any:
    answer = requests.post(
        f"{server.url}/p/alpha/rest/{method}.json", json={**params, "auth": token}, timeout=10
    )
    return answer.json().get("result")


def test_the_shell_shows_each_call_as_bitrix24_saw_it(devportal: DevportalServer, dev: DevState):
    portal = dev.add_portal("alpha")
    _, access, _ = install(dev, portal, TEST_CLIENT_ID)
    token = access.token
    call_id = rest(
        devportal,
        token,
        "telephony.externalCall.register",
        USER_PHONE_INNER="101",
        PHONE_NUMBER="+15551234567",
        TYPE=2,
        LINE_NUMBER="74951234567",
        EXTERNAL_CALL_ID="sim-1",
        CRM_ENTITY_TYPE="CONTACT",
        CRM_ENTITY_ID=7,
        SHOW=0,
    )["CALL_ID"]
    rest(devportal, token, "telephony.externalCall.show", CALL_ID=call_id, USER_ID=[2, 3])
    rest(devportal, token, "telephony.externalCall.hide", CALL_ID=call_id, USER_ID=[2])
    rest(devportal, token, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=3, DURATION=9)
    rest(devportal, token, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=3, DURATION=9)
    rest(
        devportal,
        token,
        "telephony.externalCall.attachRecord",
        CALL_ID=call_id,
        FILENAME="sim-1.wav",
        FILE_CONTENT="UklGRg==",
    )

    calls = requests.get(f"{devportal.url}/p/alpha/shell/calls", timeout=10).json()["calls"]

    assert len(calls) == 1
    call = calls[0]
    assert call["CALL_ID"] == call_id and call["EXTERNAL_CALL_ID"] == "sim-1"
    assert call["state"] == "finished"
    steps = [(s["what"], s) for s in call["events"]]
    assert [what for what, _ in steps] == [
        "registered", "shown", "hidden", "finished", "refused", "record",
    ]  # fmt: skip
    registered, shown, hidden, finished, refused, record = (s for _, s in steps)
    assert registered["user"] == {"id": 2, "name": "Boris Sales"}
    assert registered["line"] == "74951234567" and registered["crm"] == "CONTACT 7"
    assert registered["show"] is False
    assert [u["id"] for u in shown["users"]] == [2, 3] and [u["id"] for u in hidden["users"]] == [2]
    assert finished["user"]["id"] == 3 and finished["status"] == "200"
    assert finished["duration"] == 9
    assert refused["method"] == "telephony.externalcall.finish"  # the second finish
    assert record["filename"] == "sim-1.wav" and record["size"] == 4

    page = requests.get(f"{devportal.url}/p/alpha/telephony/", timeout=10)
    assert page.status_code == 200
    assert 'data-external-call-id="sim-1"' in page.text and 'data-state="finished"' in page.text
    assert "card shown to: Boris Sales, Clara Support" in page.text
    assert "record attached: sim-1.wav (4 bytes)" in page.text


def test_a_register_the_portal_refused_shows_as_not_registered(
    devportal: DevportalServer, dev: DevState
):
    portal = dev.add_portal("alpha")
    _, access, _ = install(dev, portal, TEST_CLIENT_ID)
    rest(
        devportal,
        access.token,
        "telephony.externalCall.register",
        USER_PHONE_INNER="999",
        PHONE_NUMBER="+15551234567",
        TYPE=2,
        EXTERNAL_CALL_ID="sim-2",
    )

    calls = requests.get(f"{devportal.url}/p/alpha/shell/calls", timeout=10).json()["calls"]

    assert [c["state"] for c in calls] == ["not registered"]
    assert calls[0]["events"][0]["what"] == "refused"
    ru = requests.get(f"{devportal.url}/p/alpha/telephony/?lang=ru&refresh=0", timeout=10)
    assert "не зарегистрирован" in ru.text and 'http-equiv="refresh"' not in ru.text


# --- end to end: the simulator's calls in the development portal ------------------------------


def test_simulated_calls_are_finished_once_each_with_the_right_user(
    live_app: LiveApp, alpha_key: str
):
    summary = simulate.play(
        live_app.url,
        alpha_key,
        simulate.Options(calls=20, seed=7, rate=0, gap=0, late_delay=0.1, recordings="upload"),
    )
    assert summary.ok and summary.out_of_order > 0 and summary.repeated > 0, summary.problems

    Worker(live_app.app).run(once=True)

    portal = live_app.dev.portals["alpha"]
    by_extension = {u.extension: u.id for u in portal.users.values() if u.extension}
    timelines = requests.get(f"{live_app.dev.base_url}/p/alpha/shell/calls", timeout=10).json()
    shown = {call["EXTERNAL_CALL_ID"]: call for call in timelines["calls"]}
    attached = Counter(
        e["params"]["CALL_ID"]
        for e in live_app.dev.entries(method="telephony.externalCall.attachRecord", status=200)
    )
    for result in summary.call_results:
        finished = [s for s in portal.statistics if s["EXTERNAL_CALL_ID"] == result.pbx_call_id]
        assert len(finished) == 1, result  # finished exactly once
        assert finished[0]["PORTAL_USER_ID"] == by_extension[result.user], result
        steps = [step["what"] for step in shown[result.pbx_call_id]["events"]]
        assert steps[0] == "registered" and steps.count("finished") == 1, steps
        call_id = finished[0]["CALL_ID"]
        assert attached[call_id] == (1 if result.recording else 0), result
        assert ("record" in steps) == bool(result.recording)
    assert live_app.dev.entries(error="QUERY_LIMIT_EXCEEDED") == []
