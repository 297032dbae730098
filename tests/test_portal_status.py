"""Portal states have one home (b24app/portal_status.py): each has its meaning in plain English
there, and the settings page shows each in the portal's language (settings_page/messages.py)."""

from __future__ import annotations

from b24app.portal_status import GONE, REVIVABLE, PortalStatus
from b24app.settings_page import messages


def test_every_state_says_what_it_means_and_the_page_has_it_in_both_languages() -> None:
    for status in PortalStatus:
        assert status.meaning.endswith(".")
        assert status in messages.PORTAL_LABELS
        assert status in messages.PORTAL_STATES
        assert status in messages.PORTAL_ACTIONS


def test_gone_and_revivable_are_properties_of_the_state() -> None:
    assert {s for s in PortalStatus if s.gone} == set(GONE)
    assert {s for s in PortalStatus if s.revivable} == set(REVIVABLE)
    assert not (set(GONE) & set(REVIVABLE))
