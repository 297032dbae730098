"""One URL rule for every URL b24app accepts (issue 10, item 4): b24app.bitrix.safety.parse_url,
used for portal addresses (check_portal_url) and a PBX's RECORD_URL (tests/pbx/test_intake.py)."""

from __future__ import annotations

import pytest

from b24app.bitrix.errors import UnsafeAddress
from b24app.bitrix.safety import InvalidURL, check_portal_url, parse_url
from b24app.pbx.schemas import validate_finish

GOOD = [
    "https://pbx.example.com/r/1.mp3",
    "http://pbx.example.com:8080/r/1.mp3",
    "https://pbx.example.com:65535/",
    "http://192.0.2.7/r",
    "http://[2001:db8::7]:8443/r",
    "https://xn--90aiim.xn--p1ai/r",  # an international name in its xn-- form
]
BAD = [
    ("http://a:99999999/x", "impossible host or port"),
    ("http://a:65536/x", "impossible host or port"),
    ("http://a:0/x", "impossible port (0)"),
    ("http://a:-1/x", "impossible host or port"),
    ("http://a:1e3/x", "impossible host or port"),
    ("http://[2001:db8::7/x", "impossible host or port"),
    ("http://a..b/x", "neither a host name nor an IP address"),
    ("http://-a.example/x", "neither a host name nor an IP address"),
    ("http://256.0.0.1/x", "neither a host name nor an IP address"),
    ("http://a_b.example/x", "neither a host name nor an IP address"),
    ("http://" + "a" * 64 + ".example/x", "neither a host name nor an IP address"),
    ("ftp://a.example/x", "must start with http:// or https://"),
    ("https:///x", "must start with http:// or https://"),
    ("//a.example/x", "must start with http:// or https://"),
    ("https://u:p@a.example/x", "credentials"),
    ("https://a.example/x#part", "fragment"),
    ("https://a.example/x y", "spaces"),
    ("https://a.example/\x00", "control"),
    ("https://a.example/" + "x" * 500, "at most 500 characters"),
    ("", "at most 500 characters"),
]


@pytest.mark.parametrize("url", GOOD)
def test_plain_urls_pass(url: str) -> None:
    assert parse_url(url).geturl() == url


@pytest.mark.parametrize(("url", "why"), BAD)
def test_each_broken_part_is_named(url: str, why: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        parse_url(url)
    assert why in str(refused.value)


def test_a_query_only_where_the_field_allows_one() -> None:
    url = "https://pbx.example.com/r?id=1&t=abc"
    assert parse_url(url, query=True).query == "id=1&t=abc"
    with pytest.raises(InvalidURL, match="must not have a query"):
        parse_url(url)


@pytest.mark.parametrize(("url", "why"), BAD)
def test_portal_addresses_follow_the_same_rule(url: str, why: str) -> None:
    with pytest.raises(UnsafeAddress) as refused:
        check_portal_url(url, allow_local=True)
    assert why in str(refused.value)


@pytest.mark.parametrize(("url", "why"), BAD[:11])
def test_record_url_follows_the_same_rule(url: str, why: str) -> None:
    fields = {"CALL_ID": "c1", "USER_ID": 1, "DURATION": 5, "RECORD_URL": url}
    request, errors = validate_finish(fields)
    assert request is None
    assert [e.field for e in errors] == ["RECORD_URL"]
    assert why in errors[0].message


def test_record_url_keeps_its_query_and_longer_length() -> None:
    url = "https://pbx.example.com/r/1.mp3?token=" + "x" * 1000
    request, errors = validate_finish(
        {"CALL_ID": "c1", "USER_ID": 1, "DURATION": 5, "RECORD_URL": url}
    )
    assert errors == [] and request is not None
    assert request["RECORD_URL"] == url
