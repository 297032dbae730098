"""The page speaks Russian and English: every message in the code and templates is in both
catalogues, Russian has a translation for each, placeholders survive translation, and the
committed .mo files hold exactly what their .po files say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from b24app.settings_page import i18n

PACKAGE = Path(i18n.__file__).parent
TRANSLATIONS = i18n.TRANSLATIONS
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def catalogue(lang: str, suffix: str = "po") -> Catalog:
    path = TRANSLATIONS / lang / "LC_MESSAGES" / f"messages.{suffix}"
    with path.open("rb") as handle:
        return read_po(handle, locale=lang) if suffix == "po" else read_mo(handle)


Key = tuple[str | None, str]  # (msgctxt, msgid)


def source_messages() -> set[Key]:
    """What pybabel extract finds (babel.cfg), i.e. every message the page can show."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    found = set()
    for _file, _line, message, _comments, context in extract_from_dir(
        str(PACKAGE), method_map, keywords={**DEFAULT_KEYWORDS, "lazy_gettext": None}
    ):
        found.add((context, message if isinstance(message, str) else message[0]))
    return found


def test_every_message_of_the_page_is_in_both_catalogues():
    wanted = source_messages()
    assert len(wanted) > 100
    for lang in ("ru", "en"):
        known = {(m.context, m.id) for m in catalogue(lang) if m.id}
        assert wanted - known == set(), f"run pybabel extract/update ({lang})"
        assert known - wanted == set(), f"obsolete messages in {lang}"


def test_the_russian_catalogue_translates_every_message():
    untranslated = [m.id for m in catalogue("ru") if m.id and (not m.string or m.fuzzy)]
    assert untranslated == []


def test_translations_keep_their_placeholders():
    for message in catalogue("ru"):
        if message.id:
            assert sorted(PLACEHOLDER.findall(str(message.string))) == sorted(
                PLACEHOLDER.findall(str(message.id))
            ), message.id


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_the_compiled_catalogues_match_their_sources(lang: str):
    po = {(m.context, m.id): m.string for m in catalogue(lang) if m.id and m.string}
    mo = {(m.context, m.id): m.string for m in catalogue(lang, "mo") if m.id}
    assert mo == po, "run pybabel compile -d b24app/settings_page/translations"
