"""The settings page's built files (static/settings-page/, made by `make frontend` from
frontend/): their URLs under /static/, each with a digest of its content, so a browser never
keeps an old build (the file names themselves carry no hash: the build is reproducible and
committed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import current_app, url_for


def url(name: str) -> str:
    """`/static/<name>?v=<12 hex digits of its SHA-256>` (the digest read once per process and
    file version); without the file (not built), the plain URL."""
    static = current_app.static_folder
    path = Path(static) / name if static else None
    if path is None or not path.is_file():
        return url_for("static", filename=name)
    stat = path.stat()
    return url_for("static", filename=name, v=_digest(str(path), stat.st_mtime_ns, stat.st_size))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: str, mtime_ns: int, size: int) -> str:
    key = (path, mtime_ns, size)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return _DIGESTS[key]
