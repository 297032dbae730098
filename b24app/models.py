"""Tables. Secrets are stored only encrypted (`*_encrypted` columns, see crypto.py).

Names follow Bitrix24's own spelling (`member_id`, `client_endpoint`, `application_token`) so the
code and the documentation read alike.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Re-exported: the status column's values, and their meaning, live in portal_status.py.
from b24app.portal_status import PortalStatus as PortalStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012


class CallState(enum.StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"


class AppCredentials(Base):
    """A further application's client id and secret (a portal's own local app)."""

    __tablename__ = "app_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), unique=True)
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Portal(Base):
    """One Bitrix24 portal the app is (or was) installed on, keyed by `member_id`."""

    __tablename__ = "portals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), unique=True)
    domain: Mapped[str] = mapped_column(String(255))
    client_endpoint: Mapped[str] = mapped_column(String(512))
    server_endpoint: Mapped[str] = mapped_column(String(512))
    client_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32), default=PortalStatus.ACTIVE)
    status_detail: Mapped[str | None] = mapped_column(Text)
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None]
    refreshed_at: Mapped[datetime | None]
    application_token_encrypted: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(512), default="")
    user_id: Mapped[int | None] = mapped_column(Integer)
    enterprise_limits: Mapped[bool] = mapped_column(Boolean, default=False)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    uninstalled_at: Mapped[datetime | None]

    settings: Mapped[PortalSettings] = relationship(
        back_populates="portal", uselist=False, cascade="all, delete-orphan"
    )


class PortalSettings(Base):
    """What the portal's admin chose on the settings page, plus the PBX key."""

    __tablename__ = "portal_settings"

    portal_id: Mapped[int] = mapped_column(
        ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str | None] = mapped_column(String(3))
    add_to_chat: Mapped[bool] = mapped_column(Boolean, default=False)
    fallback_user_id: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # SHOW of a start's register when the PBX does not say (register page: default 1)
    show_card: Mapped[bool] = mapped_column(Boolean, default=True)
    # where click-to-call and callback webhooks go, and their Standard Webhooks secret (originate/)
    originate_url: Mapped[str | None] = mapped_column(String(500))
    originate_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    pbx_key_encrypted: Mapped[str] = mapped_column(Text)
    pbx_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    pbx_key_rotated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # crm.currency.list, kept here so the PBX intake never waits for Bitrix24 (currencies.py)
    currencies: Mapped[list[str] | None] = mapped_column(JSON)
    currencies_fetched_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    portal: Mapped[Portal] = relationship(back_populates="settings")


class ExtensionMapping(Base):
    """The PBX extension → Bitrix24 user mapping of one portal."""

    __tablename__ = "extension_mappings"
    __table_args__ = (UniqueConstraint("portal_id", "extension"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    extension: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PortalThrottle(Base):
    """The shared request schedule of one portal (GCRA), kept apart from `portals` so that
    taking a request slot never waits for a token refresh holding the portal row."""

    __tablename__ = "portal_throttle"

    portal_id: Mapped[int] = mapped_column(
        ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True
    )
    theoretical_arrival: Mapped[float] = mapped_column(Float, default=0.0)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)


class PortalHealth(Base):
    """Whether delivery to a portal is paused because the portal failed as a whole (no
    connection, no answer, an HTML 5xx, OVERLOAD_LIMIT), and when to probe it next
    (delivery/health.py). No row, or `paused_since` empty: the portal is healthy."""

    __tablename__ = "portal_health"

    portal_id: Mapped[int] = mapped_column(
        ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True
    )
    paused_since: Mapped[datetime | None]
    probe_at: Mapped[datetime | None]  # the next probe is due then (a started probe moves it)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed probes
    reason_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)


class OAuthState(Base):
    """A one-time `state` of the authorization-code flow (re-authorising a portal)."""

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]


class WorkerHeartbeat(Base):
    """A delivery worker's sign of life (readiness and the settings page's health box)."""

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


def new_public_id() -> str:
    return uuid.uuid4().hex


def _received(context: Any) -> datetime:
    """A call's start until an event says otherwise: when its first event arrived."""
    created: datetime | None = context.get_current_parameters().get("created_at")
    return created if created is not None else utcnow()


class Call(Base):
    """A call a PBX told us about, and its way to Bitrix24: the outbox row.

    What the PBX said is in its events (`CallEvent`: start, ring, answer, finish, record); this
    row is what the worker leases and what Bitrix24 confirmed of the call as a whole. `state` is
    the outbox's: `queued` (an event is to be sent, due at `next_attempt_at`), `delivering`
    (leased), `delivered` (nothing left to send), `failed` (nothing left to send, and an event
    failed). Each new event bumps `events_version`, so a worker that claimed the call before the
    event arrived cannot mark it done (delivery/outbox.record).
    """

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("portal_id", "idempotency_key"),
        Index("ix_calls_due", "state", "next_attempt_at"),
        Index("ix_calls_portal_created", "portal_id", "created_at"),
        # the settings page's journal: newest first by the call's start, paged by (started_at, id);
        # its failed and waiting calls, and Health's counts and last delivery (migration 0008)
        Index("ix_calls_portal_started", "portal_id", "started_at", "id"),
        Index("ix_calls_portal_state", "portal_id", "state", "started_at"),
        Index("ix_calls_portal_delivered", "portal_id", "delivered_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))  # PBX_CALL_ID, else "call:"+CALL_ID
    state: Mapped[str] = mapped_column(String(16), default=CallState.QUEUED)
    events_version: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(64))
    bitrix_call_id: Mapped[str | None] = mapped_column(String(255))
    # register's answer: the CRM entity Bitrix24 bound the call to
    crm_entity_type: Mapped[str | None] = mapped_column(String(32))
    crm_entity_id: Mapped[int | None] = mapped_column(BigInteger)
    # when a register of this call was first sent: a repeat is safe only within the register
    # page's 30-minute re-registration window (delivery/lifecycle.py)
    register_sent_at: Mapped[datetime | None]
    # the employee that register named ({"USER_ID": n} or {"USER_PHONE_INNER": "…"}): a repeat
    # names the same one whatever the settings say by then, since the register page matches a
    # repeat to the first by it
    register_user: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the employees Bitrix24 was asked to show the card to, and not asked to hide it from since
    shown_to: Mapped[list[int] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # Bitrix24's finish answer
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None]
    # Bitrix24 refused the call's employee as not active: send it to the portal's fallback user.
    use_fallback_user: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)  # what the admin should know of a delivery
    # What the journal orders and finds calls by (delivery/call_index.py keeps them as events
    # arrive): when the call started (an instant, fixed when the event saying so arrived), the
    # digits of its PHONE_NUMBER, and every extension its events named ("\n101\n102\n").
    started_at: Mapped[datetime] = mapped_column(default=_received)
    phone_digits: Mapped[str | None] = mapped_column(String(32))
    extensions: Mapped[str | None] = mapped_column(Text)

    events: Mapped[list[CallEvent]] = relationship(
        back_populates="call", order_by="CallEvent.id", cascade="all, delete-orphan"
    )


class EventKind(enum.StrEnum):
    """What a PBX can say about a call, in the order Bitrix24 hears it (PRODUCT.md "The whole
    call"): register, show, hide, finish, attachRecord."""

    START = "start"
    RING = "ring"
    ANSWER = "answer"
    FINISH = "finish"
    RECORD = "record"


class EventState(enum.StrEnum):
    QUEUED = "queued"  # to be sent (or waiting for an earlier event: see `note`)
    DELIVERED = "delivered"  # Bitrix24 confirmed it (or it needed nothing sent: see `note`)
    FAILED = "failed"


# start, finish and record come once per call; ring and answer as often as the call needs them
ONCE_PER_CALL = (EventKind.START, EventKind.FINISH, EventKind.RECORD)


class CallEvent(Base):
    """One event a PBX sent about a call, as it sent it (validated), and its own delivery.

    Unique per call by (`kind`, `dedupe_key`): `dedupe_key` is "" for the events a call has
    once (ONCE_PER_CALL: a repeat with other fields is a conflict), and a digest of the fields
    for ring and answer (a repeat is the same event; other employees make a new one).
    """

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_id", "kind", "dedupe_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(64), default="")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the fields as the PBX sent them
    state: Mapped[str] = mapped_column(String(16), default=EventState.QUEUED)
    result: Mapped[Any] = mapped_column(JSON)  # Bitrix24's answer to the event's command(s)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)  # e.g. why it waits, why nothing was sent
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    call: Mapped[Call] = relationship(back_populates="events")


class RecordingState(enum.StrEnum):
    FETCHING = "fetching"  # RECORD_URL to be downloaded by a worker
    STORED = "stored"  # the audio is here, waiting to be attached
    ATTACHED = "attached"  # Bitrix24 has it; the audio is deleted
    FAILED = "failed"


class CallRecording(Base):
    """The audio of a `record` event until Bitrix24 has it.

    Kept in the database so any worker on any host can attach it (never on a local disk), and
    deleted once attached; a portal's stored audio is capped (B24APP_RECORD_PORTAL_BYTES).
    """

    __tablename__ = "call_recordings"
    __table_args__ = (Index("ix_call_recordings_due", "state", "next_attempt_at"),)

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("call_events.id", ondelete="CASCADE"),
        primary_key=True,
    )
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=RecordingState.FETCHING)
    url: Mapped[str | None] = mapped_column(Text)  # RECORD_URL, when fetched by us
    filename: Mapped[str | None] = mapped_column(String(255))
    audio: Mapped[str | None] = mapped_column(String(8))  # "mp3" or "wav", judged by content
    size: Mapped[int | None] = mapped_column(BigInteger)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    file_id: Mapped[int | None] = mapped_column(BigInteger)  # attachRecord's FILE_ID
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OriginationState(enum.StrEnum):
    QUEUED = "queued"  # to be sent (again) at `next_attempt_at`
    DELIVERED = "delivered"  # the PBX answered 2xx
    FAILED = "failed"  # given up: `error` says why


class Origination(Base):
    """A click-to-call or callback request from Bitrix24 (ONEXTERNALCALLSTART,
    ONEXTERNALCALLBACKSTART) on its way to the portal's PBX as a signed webhook (originate/).

    Unique per portal by (`kind`, `dedupe_key`): the Bitrix24 CALL_ID for click-to-call, a
    digest of the event for callbacks, so an event Bitrix24 sends twice is sent to the PBX once.
    `webhook_id` is the Standard Webhooks message id, the same on every attempt (the PBX may
    dedupe on it too).
    """

    __tablename__ = "originations"
    __table_args__ = (
        UniqueConstraint("portal_id", "kind", "dedupe_key"),
        Index("ix_originations_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # the webhook's `type`: call.start, callback.…
    dedupe_key: Mapped[str] = mapped_column(String(128))
    webhook_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)  # Bitrix24's `data`, as it sent it
    state: Mapped[str] = mapped_column(String(16), default=OriginationState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    give_up_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)  # the PBX's last HTTP status
    response_body: Mapped[str | None] = mapped_column(Text)  # its first characters
    error: Mapped[str | None] = mapped_column(Text)  # why the last attempt failed, in plain words
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class ExternalLine(Base):
    """An external line number (`LINE_NUMBER`) b24app knows the portal has
    (telephony.externalLine.add / .get), so a number first seen on a call is added once."""

    __tablename__ = "external_lines"
    __table_args__ = (UniqueConstraint("portal_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
