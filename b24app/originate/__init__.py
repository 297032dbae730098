"""From Bitrix24 to the PBX: click-to-call (ONEXTERNALCALLSTART) and callback
(ONEXTERNALCALLBACKSTART) requests, carried to the portal's PBX as signed webhooks.

The flow mirrors the PBX → Bitrix24 one: `inbox.py` accepts an event (application_token,
dedupe) and stores it; `outbox.py` leases stored requests to workers and records how each
attempt ended; `webhooks.py` builds, signs (Standard Webhooks) and sends one. The worker
(delivery/worker.py) runs the sends in a pool of their own.
"""
