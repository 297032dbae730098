"""A PBX that knows only extensions: show and hide take Bitrix24 user ids (their pages), so an
extension the portal's mapping does not have is looked up in the employees' profiles
(UF_PHONE_INNER, one batch of user.get per worker and PROFILE_TTL), and the card reaches the
right screens without the admin importing a mapping. On SQLite and PostgreSQL."""

from __future__ import annotations

from tests.delivery.test_whole_call import CALL, FINISH, START, Pbx, card, finished, pbx, steps

__all__ = ["pbx"]  # the fixture


def profile_lookups(pbx: Pbx) -> list[object]:
    """The batch request each user.get ran in."""
    return [
        entry.get("batch")
        for entry in pbx.live.dev.entries(member_id=pbx.portal.member_id)
        if entry.get("method") == "user.get"
    ]


def test_a_ring_and_an_answer_by_extensions_move_the_card_by_the_profiles(pbx: Pbx) -> None:
    public_id = pbx.send("start", **START, SHOW=0)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_PHONE_INNER=["101", "102", "999"])
    pbx.deliver()

    asked = profile_lookups(pbx)
    assert len(asked) == 3 and len(set(asked)) == 1 and asked[0] is not None  # one batch
    assert sorted(card(pbx.portal)) == [2, 3]  # Boris 101, Clara 102; nobody has 999
    (ring,) = [e for e in pbx.call(public_id)["events"] if e["kind"] == "ring"]
    assert "999" in (ring["note"] or "")  # the admin learns which extension is unknown

    pbx.send("answer", PBX_CALL_ID=CALL, USER_PHONE_INNER="102")
    pbx.send("finish", **FINISH)
    pbx.deliver()

    assert [s.users for s in steps(pbx) if s.method == "hide"] == [(2,)]
    assert finished(pbx.portal)[0]["PORTAL_USER_ID"] == 3
