"""`python -m devportal`: serve the development portal in the foreground.

It registers the development app (our app at --app-url) and seeds portals "alpha" and "beta"
(seed.py). Bound to 127.0.0.1 only: it is unauthenticated by design.
"""

from __future__ import annotations

import argparse
import contextlib

from b24app.config import DEV_CLIENT_ID, DEV_CLIENT_SECRET
from devportal.seed import seed_development
from devportal.server import DevportalServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devportal", description=__doc__)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--app-url", default="http://127.0.0.1:5000", help="b24app's base URL")
    parser.add_argument("--client-id", default=DEV_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEV_CLIENT_SECRET)
    args = parser.parse_args(argv)
    server = DevportalServer(host="127.0.0.1", port=args.port)
    seed_development(
        server.state,
        client_id=args.client_id,
        client_secret=args.client_secret,
        app_url=args.app_url,
    )
    print(f"development portal at {server.url}/  (portals: {server.url}/_dev/portals)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
