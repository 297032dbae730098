"""Serving the development portal on a real port, in a thread (tests) or in the foreground."""

from __future__ import annotations

import threading

from werkzeug.serving import BaseWSGIServer, make_server

from devportal import create_devportal_app
from devportal.state import DevState


class DevportalServer:
    """A threaded HTTP server for one DevState; `url` is its base address."""

    def __init__(self, state: DevState | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state = state or DevState()
        self.app = create_devportal_app(self.state)
        self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True)
        self.port = self._server.socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.state.base_url = self.url
        self._thread: threading.Thread | None = None

    def start(self) -> DevportalServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
