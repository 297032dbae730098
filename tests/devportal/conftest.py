"""Fixtures for the development portal's own tests: a portal with our app installed, and a
helper that calls its REST API over real HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import requests

from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState, install
from tests.conftest import TEST_CLIENT_ID


@dataclass
class Rest:
    """Calls `{portal}/rest/{method}.json` as an app would (auth inside the JSON body)."""

    base: str
    portal: DevPortal
    token: str

    def url(self, method: str) -> str:
        return f"{self.base}/p/{self.portal.code}/rest/{method}.json"

    def call(
        self, method: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> requests.Response:
        body = {**(params or {}), "auth": kw.pop("auth", self.token)}
        return requests.post(self.url(method), json=body, timeout=10, **kw)

    def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        response = self.call(method, params)
        assert response.status_code == 200, response.text
        return response.json()["result"]


@pytest.fixture
def portal(dev: DevState) -> DevPortal:
    """Portal "alpha" with the default users; our app installed and installFinish()ed."""
    portal = dev.add_portal("alpha")
    installation, _, _ = install(dev, portal, TEST_CLIENT_ID)
    installation.installed = True
    return portal


@pytest.fixture
def rest(devportal: DevportalServer, dev: DevState, portal: DevPortal) -> Rest:
    """REST as the portal's admin (user 1) through our app's token."""
    token = next(t.token for t in dev.access_tokens.values() if t.member_id == portal.member_id)
    return Rest(devportal.url, portal, token)
