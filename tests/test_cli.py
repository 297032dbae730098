"""The admin command line (PRODUCT.md, "Admin command line"), run as an admin runs it: against
our app installed on development portals through the real install flow, checking what the
admin sees printed and what the database and the development portal then hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import Result
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import text, update

from b24app import create_app
from b24app.db import get_db
from b24app.models import Portal, PortalStatus, utcnow
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from devportal import faults
from tests.conftest import TEST_CLIENT_ID, LiveApp, make_settings

DEFAULT_SETTINGS = {"currency": None, "add_to_chat": 0, "fallback_user_id": None, "timezone": "UTC"}
VALID = {
    "currency": "currency=EUR",
    "add_to_chat": "add_to_chat=1",
    "fallback_user_id": "fallback_user_id=3",
    "timezone": "timezone=Europe/Moscow",
}


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def ok(app: Flask, *args: str) -> str:
    result = run(app, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def refused(app: Flask, *args: str) -> str:
    """Run a command that must fail cleanly: non-zero exit and a message, not a traceback."""
    result = run(app, *args)
    assert result.exit_code != 0, (args, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    return result.output


def listing(app: Flask) -> dict[str, dict[str, Any]]:
    rows = json.loads(ok(app, "portals", "list", "--json"))
    assert isinstance(rows, list)
    return {row["member_id"]: row for row in rows}


def show(app: Flask, member_id: str) -> dict[str, Any]:
    data = json.loads(ok(app, "portals", "show", member_id, "--json"))
    assert isinstance(data, dict)
    return data


def export(app: Flask, member_id: str) -> str:
    return ok(app, "portals", "map", member_id, "--export")


def csv_file(tmp_path: Path, body: str, name: str = "map.csv") -> str:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return str(path)


@contextmanager
def instance(database_url: str, tmp_path: Path, keys: str, oauth: str) -> Iterator[Flask]:
    """Another app process on the same database, with its own B24APP_ENCRYPTION_KEYS."""
    other = create_app(
        make_settings(database_url, tmp_path, B24APP_ENCRYPTION_KEYS=keys, B24_OAUTH_SERVER=oauth)
    )
    try:
        yield other
    finally:
        other.extensions["b24app.db"].dispose()


def portal_by_key(app: Flask, key: str) -> str | None:
    """member_id of the portal a PBX presenting `key` is taken for."""
    with app.app_context(), get_db().read() as session:
        found = pbx_keys.find_settings_by_key(session, current_store().box, key)
        return found.portal.member_id if found else None


# --- portals list / show --------------------------------------------------------------------


def test_list_shows_every_portal_with_its_real_pbx_key(live_app: LiveApp):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")

    rows = listing(live_app.app)

    assert set(rows) == {alpha.member_id, beta.member_id}
    for portal in (alpha, beta):
        row = rows[portal.member_id]
        assert row["domain"] == portal.domain
        assert row["status"] == "active"
        assert row["pbx_key"].startswith("b24pbx_") and len(row["pbx_key"]) > 40
        assert portal_by_key(live_app.app, row["pbx_key"]) == portal.member_id
    assert rows[alpha.member_id]["pbx_key"] != rows[beta.member_id]["pbx_key"]
    with live_app.app.app_context(), get_db().read() as session:
        raw = session.execute(text("SELECT pbx_key_encrypted FROM portal_settings")).scalars()
        assert not any(row["pbx_key"] in value for value in raw for row in rows.values())
    human = ok(live_app.app, "portals", "list")
    assert alpha.member_id in human and beta.domain in human


def test_list_shows_an_uninstalled_portal_as_uninstalled(live_app: LiveApp):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    live_app.driver.uninstall(beta, TEST_CLIENT_ID)

    rows = listing(live_app.app)

    assert rows[beta.member_id]["status"] == PortalStatus.UNINSTALLED == "uninstalled"
    assert rows[alpha.member_id]["status"] == "active"


def test_show_prints_the_settings_and_defaults(live_app: LiveApp):
    alpha = live_app.install("alpha")

    data = show(live_app.app, alpha.member_id)

    assert {name: data[name] for name in DEFAULT_SETTINGS} == DEFAULT_SETTINGS
    assert data["member_id"] == alpha.member_id and data["status"] == "active"
    assert data["pbx_key"] == listing(live_app.app)[alpha.member_id]["pbx_key"]
    assert f"member_id: {alpha.member_id}" in ok(live_app.app, "portals", "show", alpha.member_id)


def test_show_of_an_unknown_portal_exits_non_zero_with_a_message(live_app: LiveApp):
    live_app.install("alpha")
    message = refused(live_app.app, "portals", "show", "0" * 32, "--json")
    assert "0" * 32 in message and "no portal" in message


# --- portals set ----------------------------------------------------------------------------


def test_set_changes_every_documented_setting(live_app: LiveApp):
    alpha = live_app.install("alpha")

    ok(live_app.app, "portals", "set", alpha.member_id, *VALID.values())

    data = show(live_app.app, alpha.member_id)
    assert data["currency"] == "EUR"
    assert data["add_to_chat"] == 1
    assert data["fallback_user_id"] == 3
    assert data["timezone"] == "Europe/Moscow"
    ok(live_app.app, "portals", "set", alpha.member_id, "add_to_chat=0", "currency=USD")
    data = show(live_app.app, alpha.member_id)
    assert (data["add_to_chat"], data["currency"]) == (0, "USD")


def test_set_refuses_a_currency_the_portal_does_not_have(live_app: LiveApp):
    """The devportal portal has RUB, USD, EUR (crm.currency.list); XYZ is none of them."""
    alpha = live_app.install("alpha")
    message = refused(live_app.app, "portals", "set", alpha.member_id, "currency=XYZ")
    assert "currency" in message and "XYZ" in message
    assert show(live_app.app, alpha.member_id)["currency"] is None


def test_set_currency_follows_the_portals_own_currency_list(live_app: LiveApp):
    """crm-currency-list.md: each portal has its own currencies; EUR is not one of gamma's."""
    gamma = live_app.install("gamma", currencies=["KZT", "RUB"])
    assert "EUR" in refused(live_app.app, "portals", "set", gamma.member_id, "currency=EUR")
    ok(live_app.app, "portals", "set", gamma.member_id, "currency=kzt")
    assert show(live_app.app, gamma.member_id)["currency"] == "KZT"


BAD_ASSIGNMENTS = [
    ("add_to_chat=2", "add_to_chat"),
    ("add_to_chat=yes", "add_to_chat"),
    ("timezone=Mars/Olympus", "timezone"),
    ("fallback_user_id=-1", "fallback_user_id"),
    ("fallback_user_id=abc", "fallback_user_id"),
    ("fallback_user_id=99999999999", "fallback_user_id"),  # beyond the database's integer
    ("fallback_user_id=²", "fallback_user_id"),  # str.isdigit() says yes, int() says no
    ("currency=XYZ", "currency"),
    ("colour=blue", "colour"),
    ("add_to_chat", "add_to_chat"),  # no "="
]


def test_a_bad_value_exits_non_zero_names_the_setting_and_changes_nothing(live_app: LiveApp):
    """Each bad assignment is tried alone, then between valid ones: nothing may change."""
    alpha = live_app.install("alpha")
    before = show(live_app.app, alpha.member_id)

    for bad, name in BAD_ASSIGNMENTS:
        valid = [item for key, item in VALID.items() if key != name]
        for assignments in ([bad], [*valid[:1], bad, *valid[1:]]):
            message = refused(live_app.app, "portals", "set", alpha.member_id, *assignments)
            assert name in message, (assignments, message)
            assert show(live_app.app, alpha.member_id) == before, assignments


def test_a_setting_given_twice_is_refused_even_when_the_last_value_is_valid(live_app: LiveApp):
    """Otherwise `add_to_chat=2 add_to_chat=1` would silently drop the bad value."""
    alpha = live_app.install("alpha")
    before = show(live_app.app, alpha.member_id)
    message = refused(
        live_app.app, "portals", "set", alpha.member_id, "add_to_chat=2", "add_to_chat=1"
    )
    assert "add_to_chat" in message
    assert show(live_app.app, alpha.member_id) == before


def test_set_on_an_unknown_portal_exits_non_zero(live_app: LiveApp):
    live_app.install("alpha")
    assert "no portal" in refused(live_app.app, "portals", "set", "f" * 32, "add_to_chat=1")


# --- portals map ----------------------------------------------------------------------------

MAPPING = "extension,user_id\n100,1\n101,2\n*55,3\n"


def test_map_import_then_export_round_trips(live_app: LiveApp, tmp_path: Path):
    alpha = live_app.install("alpha")
    assert export(live_app.app, alpha.member_id) == "extension,user_id\n"

    out = ok(
        live_app.app, "portals", "map", alpha.member_id, "--import", csv_file(tmp_path, MAPPING)
    )

    assert "3" in out
    exported = export(live_app.app, alpha.member_id)
    assert exported.splitlines()[0] == "extension,user_id"
    assert sorted(exported.splitlines()[1:]) == ["*55,3", "100,1", "101,2"]
    again = csv_file(tmp_path, exported, "again.csv")
    ok(live_app.app, "portals", "map", alpha.member_id, "--import", again)
    assert export(live_app.app, alpha.member_id) == exported
    assert show(live_app.app, alpha.member_id)["extensions"] == 3


def test_map_import_replaces_the_whole_mapping(live_app: LiveApp, tmp_path: Path):
    alpha = live_app.install("alpha")
    ok(live_app.app, "portals", "map", alpha.member_id, "--import", csv_file(tmp_path, MAPPING))

    replacement = csv_file(tmp_path, "extension,user_id\n101,4\n200,2\n", "new.csv")
    ok(live_app.app, "portals", "map", alpha.member_id, "--import", replacement)

    assert export(live_app.app, alpha.member_id) == "extension,user_id\n101,4\n200,2\n"


def test_map_of_one_portal_leaves_another_alone(live_app: LiveApp, tmp_path: Path):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    ok(live_app.app, "portals", "map", alpha.member_id, "--import", csv_file(tmp_path, MAPPING))
    assert export(live_app.app, beta.member_id) == "extension,user_id\n"


BAD_FILES = [
    ("ext,user\n100,1\n", "line 1"),  # wrong header
    ("100,1\n101,2\n", "line 1"),  # no header at all
    ("extension,user_id\n100,1\n101,abc\n", "line 3"),  # non-numeric user id
    ("extension,user_id\n100,1\n100,2\n", "line 3"),  # duplicate extension
    ("extension,user_id\n100,1\n101, 101 \n 101 ,2\n", "line 4"),  # duplicate after trimming
    ("extension,user_id\n100,1,9\n", "line 2"),  # three columns
    ("extension,user_id\n100,1\n101\n", "line 3"),  # one column
    ("extension,user_id\n100,0\n", "line 2"),  # not a user id
    ("extension,user_id\n100,99999999999\n", "line 2"),  # beyond the database's integer
    ("extension,user_id\n100,²\n", "line 2"),  # str.isdigit() says yes, int() says no
    ("extension,user_id\n100,1\n\n101,abc\n", "line 4"),  # blank lines still count
]


def test_a_bad_csv_exits_non_zero_naming_the_line_and_keeps_the_mapping(
    live_app: LiveApp, tmp_path: Path
):
    alpha = live_app.install("alpha")
    ok(live_app.app, "portals", "map", alpha.member_id, "--import", csv_file(tmp_path, MAPPING))
    before = export(live_app.app, alpha.member_id)

    for index, (body, line) in enumerate(BAD_FILES):
        path = csv_file(tmp_path, body, f"bad{index}.csv")
        message = refused(live_app.app, "portals", "map", alpha.member_id, "--import", path)
        assert line in message, (body, message)
        assert export(live_app.app, alpha.member_id) == before, body


def test_a_csv_that_is_not_utf8_is_refused(live_app: LiveApp, tmp_path: Path):
    alpha = live_app.install("alpha")
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"extension,user_id\n\xe9100,1\n")
    assert str(path) in refused(
        live_app.app, "portals", "map", alpha.member_id, "--import", str(path)
    )
    assert export(live_app.app, alpha.member_id) == "extension,user_id\n"


def test_map_needs_exactly_one_of_import_and_export(live_app: LiveApp, tmp_path: Path):
    alpha = live_app.install("alpha")
    path = csv_file(tmp_path, MAPPING)
    both = refused(live_app.app, "portals", "map", alpha.member_id, "--import", path, "--export")
    neither = refused(live_app.app, "portals", "map", alpha.member_id)
    for message in (both, neither):
        assert "--import" in message and "--export" in message
    assert export(live_app.app, alpha.member_id) == "extension,user_id\n"


def test_map_of_an_unknown_portal_exits_non_zero(live_app: LiveApp, tmp_path: Path):
    live_app.install("alpha")
    path = csv_file(tmp_path, MAPPING)
    assert "no portal" in refused(live_app.app, "portals", "map", "e" * 32, "--import", path)
    assert "no portal" in refused(live_app.app, "portals", "map", "e" * 32, "--export")


# --- portals rotate-key ---------------------------------------------------------------------


def test_rotate_key_prints_a_new_key_and_the_old_one_is_gone(live_app: LiveApp):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    before = listing(live_app.app)
    old = before[alpha.member_id]["pbx_key"]

    new = ok(live_app.app, "portals", "rotate-key", alpha.member_id).strip()

    assert new.startswith("b24pbx_") and new != old
    after = listing(live_app.app)
    assert after[alpha.member_id]["pbx_key"] == new
    assert old not in json.dumps(list(after.values()))
    assert after[beta.member_id]["pbx_key"] == before[beta.member_id]["pbx_key"]
    assert portal_by_key(live_app.app, new) == alpha.member_id
    assert portal_by_key(live_app.app, old) is None


def test_rotate_key_of_an_unknown_portal_exits_non_zero(live_app: LiveApp):
    live_app.install("alpha")
    assert "no portal" in refused(live_app.app, "portals", "rotate-key", "d" * 32)


# --- portals reauth-url ---------------------------------------------------------------------


def test_reauth_url_points_at_the_portals_authorize_page_and_works(live_app: LiveApp):
    """settings/oauth/index.md: `{portal}/oauth/authorize/?client_id=…&state=…`; the portal
    redirects to our redirect URI with `code` and our `state`, which we exchange."""
    alpha = live_app.install("alpha")

    url = ok(live_app.app, "portals", "reauth-url", alpha.member_id).strip()

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == live_app.dev.base_url
    assert parts.path == f"/p/{alpha.code}/oauth/authorize/"
    assert query["client_id"] == [TEST_CLIENT_ID]
    assert len(query["state"][0]) >= 32
    landing = requests.get(url, timeout=10)  # the admin's browser, following the redirect
    assert landing.status_code == 200, landing.text
    assert landing.url.startswith(f"{live_app.url}/oauth/callback")
    assert ok(live_app.app, "portals", "reauth-url", alpha.member_id).strip() != url


def test_reauth_url_of_an_unknown_or_uninstalled_portal_exits_non_zero(live_app: LiveApp):
    alpha = live_app.install("alpha")
    live_app.driver.uninstall(alpha, TEST_CLIENT_ID)
    assert alpha.member_id in refused(live_app.app, "portals", "reauth-url", alpha.member_id)
    assert "c" * 32 in refused(live_app.app, "portals", "reauth-url", "c" * 32)


# --- apps add -------------------------------------------------------------------------------


def stored_credentials(app: Flask) -> list[tuple[str, str]]:
    with app.app_context(), get_db().read() as session:
        rows = session.execute(
            text("SELECT client_id, client_secret_encrypted FROM app_credentials")
        )
        return [(client_id, secret) for client_id, secret in rows]


def secret_of(app: Flask, client_id: str) -> str | None:
    with app.app_context(), get_db().read() as session:
        return current_store().client_secret_for(session, client_id)


def test_apps_add_stores_the_secret_encrypted_and_a_second_add_replaces_it(live_app: LiveApp):
    app = live_app.app
    ok(app, "apps", "add", "--client-id", "local.abc123", "--client-secret", "first-SECRET-1")

    [(client_id, raw)] = stored_credentials(app)
    assert client_id == "local.abc123"
    assert "first-SECRET-1" not in raw
    assert secret_of(app, "local.abc123") == "first-SECRET-1"

    ok(app, "apps", "add", "--client-id", "local.abc123", "--client-secret", "second-SECRET-2")

    [(client_id, raw)] = stored_credentials(app)
    assert "second-SECRET-2" not in raw and "first-SECRET-1" not in raw
    assert secret_of(app, "local.abc123") == "second-SECRET-2"


def test_apps_add_refuses_an_empty_secret(live_app: LiveApp):
    refused(live_app.app, "apps", "add", "--client-id", "local.abc123", "--client-secret", " ")
    assert stored_credentials(live_app.app) == []


# --- keys rotate ----------------------------------------------------------------------------


def readable_secrets(app: Flask, member_id: str) -> tuple[str, str, str | None, str | None]:
    """Everything encrypted for one portal and one added app, decrypted by `app`'s keys."""
    with app.app_context(), get_db().read() as session:
        portal = store.find_portal(session, member_id)
        assert portal is not None
        pair = current_store().read_tokens(portal)
        assert pair is not None
        return (
            pair.access_token,
            pair.refresh_token,
            current_store().application_token(portal),
            current_store().client_secret_for(session, "local.abc123"),
        )


def test_keys_rotate_moves_every_secret_to_the_newest_key(
    live_app: LiveApp, database_url: str, tmp_path: Path
):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    ok(live_app.app, "apps", "add", "--client-id", "local.abc123", "--client-secret", "s3cret")
    old_key = live_app.app.config["SETTINGS"].encryption_keys
    new_key = Fernet.generate_key().decode()
    oauth = live_app.dev.base_url
    keys_before = listing(live_app.app)
    secrets_before = readable_secrets(live_app.app, alpha.member_id)

    with instance(database_url, tmp_path, f"{new_key},{old_key}", oauth) as both:
        assert "re-encrypted" in ok(both, "keys", "rotate")

    with instance(database_url, tmp_path, new_key, oauth) as newest:
        assert listing(newest) == keys_before
        assert readable_secrets(newest, alpha.member_id) == secrets_before
        assert secrets_before[0] in live_app.dev.access_tokens
        assert secrets_before[3] == "s3cret"
        for member_id in (alpha.member_id, beta.member_id):
            assert portal_by_key(newest, keys_before[member_id]["pbx_key"]) == member_id

    with instance(database_url, tmp_path, Fernet.generate_key().decode(), oauth) as wrong:
        listed = refused(wrong, "portals", "list", "--json")
        assert "decrypt" in listed and "B24APP_ENCRYPTION_KEYS" in listed
        assert not any(row["pbx_key"] in listed for row in keys_before.values())
        assert "decrypt" in refused(wrong, "portals", "show", alpha.member_id, "--json")


def test_keys_rotate_without_the_old_key_refuses_and_writes_nothing(
    live_app: LiveApp, database_url: str, tmp_path: Path
):
    """Rotating with the old key already dropped must not half-rotate: nothing is rewritten."""
    alpha = live_app.install("alpha")
    keys_before = listing(live_app.app)
    secrets_before = readable_secrets(live_app.app, alpha.member_id)
    new_key = Fernet.generate_key().decode()

    with instance(database_url, tmp_path, new_key, live_app.dev.base_url) as newest_only:
        assert "decrypt" in refused(newest_only, "keys", "rotate")

    assert listing(live_app.app) == keys_before
    assert readable_secrets(live_app.app, alpha.member_id) == secrets_before


# --- tokens refresh-idle --------------------------------------------------------------------


def push_refreshed_at_back(app: Flask, member_id: str, days: int) -> None:
    with app.app_context(), get_db().write() as session:
        session.execute(
            update(Portal)
            .where(Portal.member_id == member_id)
            .values(refreshed_at=utcnow() - timedelta(days=days))
        )


def refreshed_at(app: Flask, member_id: str) -> Any:
    with app.app_context(), get_db().read() as session:
        portal = store.find_portal(session, member_id)
        assert portal is not None
        return portal.refreshed_at


def test_refresh_idle_refreshes_only_the_idle_portal(live_app: LiveApp):
    """settings/oauth/auto-renewal.md: a refresh token lives 180 days; refreshing idle portals
    keeps them alive. One refresh goes to the OAuth server, for the idle portal only."""
    idle = live_app.install("alpha")
    fresh = live_app.install("beta")
    push_refreshed_at_back(live_app.app, idle.member_id, 40)
    fresh_at = refreshed_at(live_app.app, fresh.member_id)
    old_tokens = readable_secrets(live_app.app, idle.member_id)[:2]
    refreshes = len(live_app.dev.entries(oauth="refresh_token"))

    out = ok(live_app.app, "tokens", "refresh-idle", "--days", "30")

    assert "refreshed 1" in out
    new = live_app.dev.entries(oauth="refresh_token")[refreshes:]
    assert [(e["member_id"], e["status"]) for e in new] == [(idle.member_id, 200)]
    assert refreshed_at(live_app.app, idle.member_id) > utcnow() - timedelta(minutes=1)
    assert refreshed_at(live_app.app, fresh.member_id) == fresh_at
    new_tokens = readable_secrets(live_app.app, idle.member_id)[:2]
    assert new_tokens[0] != old_tokens[0] and new_tokens[1] != old_tokens[1]
    assert new_tokens[0] in live_app.dev.access_tokens

    assert "refreshed 0" in ok(live_app.app, "tokens", "refresh-idle", "--days", "30")
    assert len(live_app.dev.entries(oauth="refresh_token")) == refreshes + 1


def test_refresh_idle_skips_uninstalled_portals(live_app: LiveApp):
    gone = live_app.install("alpha")
    live_app.driver.uninstall(gone, TEST_CLIENT_ID)
    push_refreshed_at_back(live_app.app, gone.member_id, 40)
    refreshes = len(live_app.dev.entries(oauth="refresh_token"))
    assert "refreshed 0, failed 0" in ok(live_app.app, "tokens", "refresh-idle", "--days", "30")
    assert len(live_app.dev.entries(oauth="refresh_token")) == refreshes


# --- db upgrade -----------------------------------------------------------------------------


def test_db_upgrade_is_idempotent_and_keeps_the_data(live_app: LiveApp):
    alpha = live_app.install("alpha")
    before = listing(live_app.app)
    for _ in range(2):
        assert "head" in ok(live_app.app, "db", "upgrade")
    assert listing(live_app.app) == before
    assert show(live_app.app, alpha.member_id)["status"] == "active"


# --- issue 14, What to build 4: a domain for a member_id; the fallback employee checked --------


def test_every_portals_command_takes_the_domain_as_well(live_app: LiveApp, tmp_path: Path):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    by_id = show(live_app.app, alpha.member_id)

    for name in (alpha.domain, alpha.domain.upper(), f"https://{alpha.domain}/"):
        assert show(live_app.app, name) == by_id, name
    ok(live_app.app, "portals", "set", alpha.domain, "currency=EUR", "timezone=Europe/Moscow")
    mapping_csv = csv_file(tmp_path, "extension,user_id\n201,2\n")
    ok(live_app.app, "portals", "map", alpha.domain, "--import", mapping_csv)
    assert export(live_app.app, alpha.domain) == "extension,user_id\n201,2\n"
    new_key = ok(live_app.app, "portals", "rotate-key", alpha.domain).strip()
    url = ok(live_app.app, "portals", "reauth-url", alpha.domain).strip()

    after = show(live_app.app, alpha.member_id)
    assert (after["currency"], after["timezone"], after["extensions"]) == (
        "EUR",
        "Europe/Moscow",
        1,
    )
    assert after["pbx_key"] == new_key != by_id["pbx_key"]
    assert parse_qs(urlsplit(url).query)["state"]
    assert show(live_app.app, beta.member_id)["currency"] is None  # the other portal untouched
    assert export(live_app.app, beta.domain) == "extension,user_id\n"


def test_an_unknown_domain_is_named(live_app: LiveApp):
    live_app.install("alpha")
    message = refused(live_app.app, "portals", "show", "nowhere.bitrix24.test", "--json")
    assert "no portal" in message and "nowhere.bitrix24.test" in message


def test_a_domain_two_portals_share_asks_for_the_member_id(live_app: LiveApp):
    """A portal row keeps its domain after an uninstall; another install may have it now."""
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    with live_app.app.app_context(), get_db().write() as session:
        session.execute(
            update(Portal).where(Portal.member_id == beta.member_id).values(domain=alpha.domain)
        )

    message = refused(live_app.app, "portals", "set", alpha.domain, "add_to_chat=1")

    assert alpha.member_id in message and beta.member_id in message
    assert show(live_app.app, alpha.member_id)["add_to_chat"] == 0


@pytest.mark.parametrize(
    ("user_id", "why"), [("42", "no such user"), ("5", "a dismissed employee (ACTIVE false)")]
)
def test_a_fallback_user_who_is_no_active_employee_is_refused(
    live_app: LiveApp, user_id: str, why: str
):
    """user-get.md: FILTER ID and ACTIVE; the development portal's user 5 is dismissed."""
    alpha = live_app.install("alpha")
    before = show(live_app.app, alpha.member_id)

    message = refused(
        live_app.app,
        "portals",
        "set",
        alpha.member_id,
        "currency=EUR",
        f"fallback_user_id={user_id}",
    )

    assert "fallback_user_id" in message and user_id in message, why
    assert "active employee" in message
    assert show(live_app.app, alpha.member_id) == before  # not even the valid currency


def test_an_active_employee_is_taken_as_fallback_and_none_clears_it(live_app: LiveApp):
    alpha = live_app.install("alpha")
    ok(live_app.app, "portals", "set", alpha.domain, "fallback_user_id=4")
    assert show(live_app.app, alpha.member_id)["fallback_user_id"] == 4
    ok(live_app.app, "portals", "set", alpha.domain, "fallback_user_id=none")
    assert show(live_app.app, alpha.member_id)["fallback_user_id"] is None


def test_a_fallback_user_cannot_be_checked_while_bitrix24_is_down(live_app: LiveApp):
    alpha = live_app.install("alpha")
    before = show(live_app.app, alpha.member_id)
    faults.set_outage(live_app.dev, alpha, "503")

    message = refused(live_app.app, "portals", "set", alpha.member_id, "fallback_user_id=3")

    assert "fallback_user_id" in message and "could not ask" in message
    assert show(live_app.app, alpha.member_id) == before
