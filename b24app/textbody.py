"""Text in request bodies: decoded strictly, as declared, never repaired.

A form field or JSON string whose bytes are not valid text in its charset is refused with
`UndecodableText` (a 400 naming the field, or the body when the bytes are not in one field's
value), never stored with U+FFFD or `%FF` in place of the bytes (issue 10, item 3). Werkzeug would
repair: it percent-quotes undecodable bytes of a urlencoded form, replaces them in multipart
fields, and its silent form parser turns a decoding error into an empty form.

Charsets (RFC 9110 section 8.3.1 `charset=` on the content type; multipart parts may carry their
own, RFC 7578 section 4.4): absent means UTF-8; a declared one that Python knows and that keeps
ASCII as ASCII (windows-1251, koi8-r, iso-8859-5 … as Russian PBXs send) is decoded as declared;
any other (unknown, or UTF-16 and the like, where `&` and `=` are not single bytes) is refused
with `UnsupportedCharset` (415). JSON follows the same rule (RFC 8259 section 8.1 asks for UTF-8;
one declared otherwise is still decoded as declared).

`StrictRequest` makes every `request.form` of the app strict: the PBX API, and Bitrix24's
/install, /events and /app posts.
"""

from __future__ import annotations

import codecs
from typing import IO, Any, cast
from urllib.parse import unquote_to_bytes

from flask import Request
from werkzeug.datastructures import FileStorage, Headers
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

UTF8 = "utf-8"
HINT = (
    "Send UTF-8 text, or declare the charset the PBX really uses in the Content-Type, "
    "e.g. application/x-www-form-urlencoded; charset=windows-1251."
)


class UndecodableText(BadRequest):
    """400: `field` (None: the body itself) holds bytes that are not text in `charset`."""

    def __init__(self, field: str | None, charset: str, error: UnicodeDecodeError) -> None:
        where = f"field {field}" if field is not None else "the body"
        byte = error.object[error.start : error.start + 1].hex().upper()
        super().__init__(f"{where} is not valid {charset} text (byte 0x{byte}). {HINT}")
        self.field = field
        self.charset = charset
        self.message = f"is not valid {charset} text (byte 0x{byte}); {HINT}"


class UnsupportedCharset(UnsupportedMediaType):
    """415: the declared charset is unknown, or not one that keeps ASCII as ASCII."""

    def __init__(self, charset: str) -> None:
        super().__init__(
            f"charset={charset[:40]} is not supported: send UTF-8, or a charset that keeps "
            "ASCII as ASCII (windows-1251, koi8-r, iso-8859-5, ...)."
        )


def charset_of(declared: str | None) -> str:
    """The codec for a declared `charset=` value (None or empty: UTF-8), or UnsupportedCharset."""
    if not declared:
        return UTF8
    name = declared.strip().strip('"').lower()
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise UnsupportedCharset(declared) from None
    ascii_safe = getattr(info, "_is_text_encoding", True) and _keeps_ascii(info.name)
    if not ascii_safe:
        raise UnsupportedCharset(declared)
    return info.name


def _keeps_ascii(codec: str) -> bool:
    sample = bytes(range(32, 127))
    try:
        return sample.decode(codec) == sample.decode("ascii") and "\r\n".encode(codec) == b"\r\n"
    except (UnicodeError, ValueError):
        return False


def decode(raw: bytes, charset: str, field: str | None) -> str:
    """`raw` as text in `charset`, strictly; UndecodableText naming `field` otherwise."""
    try:
        return raw.decode(charset)
    except UnicodeDecodeError as error:
        raise UndecodableText(field, charset, error) from None


def parse_urlencoded(body: bytes, charset: str) -> list[tuple[str, str]]:
    """`application/x-www-form-urlencoded` pairs in order (blank values kept).

    Written out rather than urllib's parse_qsl: parse_qsl's `errors=` either repairs or fails
    without saying which field, and it refuses raw non-ASCII bytes that some PBXs send unescaped.
    The byte-level split is the WHATWG urlencoded parser's (`&`, `=`, `+`, percent-decoding).
    """
    pairs: list[tuple[str, str]] = []
    for chunk in body.split(b"&"):
        if not chunk:
            continue
        raw_name, _, raw_value = chunk.partition(b"=")
        name_bytes = unquote_to_bytes(raw_name.replace(b"+", b" "))
        name = decode(name_bytes, charset, None)
        value = decode(unquote_to_bytes(raw_value.replace(b"+", b" ")), charset, name)
        pairs.append((name, value))
    return pairs


class StrictFormDataParser(FormDataParser):
    """Werkzeug's form parser with strict, declared-charset decoding (module docstring).

    UndecodableText and UnsupportedCharset are HTTP errors, not ValueError, so the silent parser
    lets them through instead of answering with an empty form.
    """

    def _parse_urlencoded(
        self, stream: Any, mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> Any:
        charset = charset_of(options.get("charset"))
        return stream, self.cls(parse_urlencoded(stream.read(), charset)), self.cls()

    def _parse_multipart(
        self, stream: Any, mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> Any:
        boundary = options.get("boundary", "").encode("ascii", "replace")
        if not boundary:
            raise ValueError("Missing boundary")
        fields, files = _multipart(self, stream, boundary, content_length)
        return stream, self.cls(fields), self.cls(files)


def _multipart(
    parser: FormDataParser, stream: Any, boundary: bytes, content_length: int | None
) -> tuple[list[tuple[str, str]], list[tuple[str, FileStorage]]]:
    """Werkzeug's own multipart decoder (its sansio API, with its size and part limits), each
    field decoded strictly in its part's charset; files as Werkzeug would store them."""
    decoder = MultipartDecoder(
        boundary, max_form_memory_size=parser.max_form_memory_size, max_parts=parser.max_form_parts
    )
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, FileStorage]] = []
    part: Field | File | None = None
    chunks: list[bytes] = []
    container: Any = None
    for data in iter(lambda: stream.read(64 * 1024), b""):
        decoder.receive_data(data)
        event = decoder.next_event()
        while not isinstance(event, Epilogue | NeedData):
            if isinstance(event, Field):
                part, chunks = event, []
            elif isinstance(event, File):
                part = event
                container = parser.stream_factory(
                    total_content_length=content_length,
                    content_type=event.headers.get("content-type"),
                    filename=event.filename,
                    content_length=0,
                )
            elif isinstance(event, Data) and isinstance(part, Field):
                chunks.append(event.data)
                if not event.more_data:
                    charset = _part_charset(part.headers)
                    fields.append((part.name, decode(b"".join(chunks), charset, part.name)))
            elif isinstance(event, Data) and isinstance(part, File):
                container.write(event.data)
                if not event.more_data:
                    container.seek(0)
                    storage = FileStorage(container, part.filename, part.name, headers=part.headers)
                    files.append((part.name, storage))
            event = decoder.next_event()
    return fields, files


def _part_charset(headers: Headers) -> str:
    return charset_of(parse_options_header(headers.get("content-type"))[1].get("charset"))


class StrictRequest(Request):
    """Flask's request with StrictFormDataParser for `request.form` and `request.files`, and a
    body without a Content-Length (chunked) over `max_content_length` refused whole (413)."""

    form_data_parser_class = StrictFormDataParser

    @cached_property
    def stream(self) -> IO[bytes]:
        """Werkzeug's stream, except that a body the server ends itself (`wsgi.input_terminated`:
        chunked, no Content-Length) is read through `_AtMost`: Werkzeug's LimitedStream stopped
        at exactly `max_content_length` without looking further, so a longer form or JSON body
        was silently cut there and processed (a field past 1 MiB lost, or 400 "char 1048576")."""
        if self.shallow:
            raise RuntimeError("This request was created with 'shallow=True'.")
        limit = self.max_content_length
        stream = get_input_stream(self.environ, max_content_length=limit)  # 413: Content-Length
        if limit is not None and "wsgi.input_terminated" in self.environ:
            return cast(IO[bytes], _AtMost(self.environ["wsgi.input"], limit, is_max=True))
        return stream


class _AtMost(LimitedStream):
    """A stream of at most `limit` bytes that is 413 as soon as it holds one more: having read
    exactly `limit`, it reads one byte further (none: the body ended there)."""

    def on_exhausted(self) -> None:
        if self._stream.read(1):
            raise RequestEntityTooLarge()

    def readall(self) -> bytes:
        data = super().readall()  # stops at the limit without asking for more
        if self.is_exhausted:
            self.on_exhausted()
        return data
