"""The portal's originate secret: the key its click-to-call webhooks are signed with.

A Standard Webhooks secret (`whsec_` + base64 of 32 random bytes; standard-webhooks spec,
"Signature scheme"), stored encrypted with the store's SecretBox like the PBX key. Portals
installed before it existed get one the first time it is needed (`reveal`). Rotating it makes
the old one useless at commit: the PBX must be given the new one (settings page, `portals show`).
"""

from __future__ import annotations

import base64
import secrets

from b24app.crypto import SecretBox
from b24app.models import PortalSettings

PREFIX = "whsec_"


def generate() -> str:
    """A new secret: 256 bits, in the form every Standard Webhooks library reads."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def reveal(settings: PortalSettings, box: SecretBox) -> str:
    """The portal's secret; made (and left for the caller's transaction to keep) if it has
    none yet."""
    if not settings.originate_secret_encrypted:
        return rotate(settings, box)
    return box.decrypt(settings.originate_secret_encrypted)


def rotate(settings: PortalSettings, box: SecretBox) -> str:
    """Give the portal a new secret and return it; the old one signs nothing after commit."""
    secret = generate()
    settings.originate_secret_encrypted = box.encrypt(secret)
    return secret
