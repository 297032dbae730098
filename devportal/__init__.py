"""The development portal: Bitrix24 cloud portals and their OAuth server, emulated from the
reference documentation (../shared/reference/) so that b24app can be built and tested offline.

Several portals live in one process, each at `{base}/p/{code}/` (its REST at `…/rest/`); the
OAuth server is at `{base}/oauth/token/` and `{base}/rest/app.info/`; `/_dev/` is the inspection
and fault-injection API used by tests, benchmarks and the shell page. `/_pbx/<code>/originate` is
not Bitrix24 at all: a stand-in for portal <code>'s PBX, receiving b24app's click-to-call and
callback webhooks (pbx_receiver.py).
"""

from __future__ import annotations

from flask import Flask

from devportal.state import DevState


def create_devportal_app(state: DevState | None = None) -> Flask:
    from devportal import inspect, methods, oauth, pbx_receiver, rest, shell, upload

    methods.load_all()
    app = Flask(__name__)
    app.extensions["devportal.state"] = state or DevState()
    app.register_blueprint(upload.bp)  # before rest.bp's catch-all method route
    app.register_blueprint(rest.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(inspect.bp)
    app.register_blueprint(shell.bp)
    app.register_blueprint(pbx_receiver.bp)
    return app
