"""An HTTP server put in front of part of the development portal (its OAuth server, or a
portal's REST address) that passes requests on or fails them as a real one does: for tests of
what b24app does when a token refresh fails (settings/oauth/index.md) or a token is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from b24app.wiring import store_of
from tests.conftest import LiveApp


class Front:
    """An HTTP server before `upstream` (scheme and host): it passes requests on (`mode`
    "pass"), or answers them itself as a failing server would ("html503": a proxy's error page;
    "html200": a page that is not JSON; "invalid_token once": a portal's 401 `invalid_token`
    to the next request, then "pass" again)."""

    def __init__(self, upstream: str) -> None:
        self.mode = "pass"
        self.asked = 0  # requests that reached it
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                front.asked += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if front.mode == "pass":
                    answer = requests.post(
                        upstream + self.path,
                        data=body,
                        headers={"Content-Type": self.headers.get("Content-Type", "")},
                        timeout=10,
                    )
                    self._send(answer.status_code, answer.content, "application/json")
                elif front.mode == "invalid_token once":
                    front.mode = "pass"
                    refused = b'{"error":"invalid_token","error_description":"invalid"}'
                    self._send(401, refused, "application/json")
                elif front.mode == "html503":
                    self._send(503, b"<html><body>503 Service Unavailable</body></html>")
                else:
                    self._send(200, b"<html><body>Fatal error</body></html>")

            do_GET = do_POST

            def _send(self, status: int, body: bytes, kind: str = "text/html") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def oauth_in_front(live: LiveApp) -> Iterator[Front]:
    """The live app's OAuth server is a Front before the development portal's."""
    front = Front(live.dev.base_url)
    installations = store_of(live.app)
    before = installations.settings
    installations.settings = before.model_copy(update={"oauth_server": front.url})
    try:
        yield front
    finally:
        installations.settings = before
        front.close()
