"""The WebSocket protocol of ``/v1/realtime/ws``: frames, decoding, encoding, close codes.

Pure: no IO, no asyncio. Every frame is a JSON object with a ``"type"`` field (docs/protocol.md).

- ``decode_client_frame(data)`` turns one text frame into a client frame Struct, or raises
  ``ProtocolError`` naming the problem (malformed JSON, unknown type, wrong or missing field).
- ``encode(frame)`` renders a server frame as JSON bytes; ``ws_text_frame(payload)`` wraps bytes
  in a complete (unmasked, server-to-client) WebSocket text frame, so a broadcast is encoded
  once and the same bytes are written to every subscriber.
- ``CLOSE_CODES``: one row per reason the server closes a connection. 4000-4099 are terminal
  (do not reconnect without fixing something), 4100-4199 mean "reconnect with backoff".
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

import msgspec

Ref = Union[int, str, None]


class ProtocolError(Exception):
    """A client frame we cannot accept. The client's fault; ``ref`` echoes its request id if known."""

    code = "invalid_request"

    def __init__(self, message: str, *, ref: Ref = None, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref
        self.hint = hint
        self.field = field

    def details(self) -> dict[str, Any]:
        """Extra fields for the error frame."""
        return {k: v for k, v in (("field", self.field), ("hint", self.hint)) if v is not None}


# ---------------------------------------------------------------- client -> server frames


class _ClientFrame(msgspec.Struct, tag_field="type", forbid_unknown_fields=False, omit_defaults=True,
                   rename="camel"):
    """Wire names are camelCase like the REST API (a field `max_count` would be `maxCount`)."""


class Join(_ClientFrame, tag="join"):
    """Subscribe to ``channel``. ``since``: replay messages with offset > since first;
    ``last``: replay the last N messages first. Acked with the channel's latest offset."""
    channel: str
    ref: Ref = None
    since: int | None = None
    last: int | None = None


class Leave(_ClientFrame, tag="leave"):
    channel: str
    ref: Ref = None


class Publish(_ClientFrame, tag="publish"):
    """Publish ``payload`` under ``event``; acked with the message's offset once durable."""
    channel: str
    event: str
    payload: Any = None
    ref: Ref = None


class Track(_ClientFrame, tag="track"):
    """Announce this connection's presence on a joined channel with a user object."""
    channel: str
    user: dict[str, Any]
    ref: Ref = None


class Untrack(_ClientFrame, tag="untrack"):
    channel: str
    ref: Ref = None


class GetPresence(_ClientFrame, tag="presence"):
    """Ask for the current presence list of a channel (acked with ``presence``)."""
    channel: str
    ref: Ref = None


class Ping(_ClientFrame, tag="ping"):
    """Heartbeat; the server answers ``pong``. Any frame resets the server's timeout."""
    ref: Ref = None


ClientFrame = Union[Join, Leave, Publish, Track, Untrack, GetPresence, Ping]
CLIENT_TYPES = ("join", "leave", "publish", "track", "untrack", "presence", "ping")

_decoder = msgspec.json.Decoder(ClientFrame)
_raw_decoder = msgspec.json.Decoder()


def decode_client_frame(data: str | bytes) -> ClientFrame:
    """Decode one client text frame or raise ``ProtocolError`` naming what is wrong."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as e:
        raise _explain(data, str(e)) from None
    except msgspec.DecodeError as e:
        raise ProtocolError(f"malformed JSON: {e}", hint="send one JSON object per text frame") from None


def _explain(data: str | bytes, detail: str) -> ProtocolError:
    # Re-read loosely to echo the ref and to say "unknown type" clearly.
    try:
        raw = _raw_decoder.decode(data)
    except msgspec.DecodeError:
        raw = None
    if not isinstance(raw, dict):
        return ProtocolError("a frame must be a JSON object with a \"type\" field")
    ref = raw.get("ref") if isinstance(raw.get("ref"), (int, str)) else None
    kind = raw.get("type")
    if kind is None:
        return ProtocolError("missing field \"type\"", ref=ref, hint=f"one of {', '.join(CLIENT_TYPES)}")
    if kind not in CLIENT_TYPES:
        return ProtocolError(f"unknown frame type {kind!r}", ref=ref, hint=f"one of {', '.join(CLIENT_TYPES)}")
    # msgspec says e.g. "Expected `int | null`, got `str` - at `$.since`"
    m = _FIELD_IN_DETAIL.search(detail)
    return ProtocolError(f"invalid {kind!r} frame: {detail.replace('$.', '')}", ref=ref,
                         field=m.group(1) or m.group(2) if m else None)


_FIELD_IN_DETAIL = re.compile(r"at `\$\.(\w+)|missing required field `(\w+)`")


# ---------------------------------------------------------------- server -> client frames


class _ServerFrame(msgspec.Struct, tag_field="type", omit_defaults=True, rename="camel"):
    pass


class Ack(_ServerFrame, tag="ack"):
    """Reply to a request with ``ref``. join: ``channel`` and ``offset`` (latest offset);
    publish: ``channel`` and ``offset`` of the message; presence: ``presence``."""
    ref: Ref = None
    channel: str | None = None
    offset: int | None = None
    presence: list[dict[str, Any]] | None = None


class Error(_ServerFrame, tag="error"):
    """``error`` is ``{"code", "message", ...details}``, the same shape as REST errors."""
    error: dict[str, Any]
    ref: Ref = None


class Message(_ServerFrame, tag="message"):
    channel: str
    offset: int
    event: str
    payload: Any
    published_at: datetime
    publisher: str | None = None


class PresenceState(_ServerFrame, tag="presence_state"):
    """Full presence list of a channel, sent right after a join ack."""
    channel: str
    presence: list[dict[str, Any]]


class PresenceDiff(_ServerFrame, tag="presence_diff"):
    """One tracked user joined or left (``event`` is "join" or "leave")."""
    channel: str
    event: str
    user: dict[str, Any]


class Pong(_ServerFrame, tag="pong"):
    ref: Ref = None


ServerFrame = Union[Ack, Error, Message, PresenceState, PresenceDiff, Pong]

_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame) -> bytes:
    return _encoder.encode(frame)


def error_frame(code: str, message: str, *, ref: Ref = None, **details: Any) -> Error:
    return Error(error={"code": code, "message": message, **details}, ref=ref)


def ws_text_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame (FIN set, no compression) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


# ---------------------------------------------------------------- close codes


@dataclass(frozen=True, slots=True)
class CloseCode:
    code: int
    reason: str          # sent as the close reason, equal to the error code where one exists
    reconnect: bool      # may the client reconnect (with backoff) without changing anything?
    description: str


CLOSE_CODES: dict[str, CloseCode] = {c.reason: c for c in [
    # 4000-4099: terminal, fix the cause before reconnecting
    CloseCode(4000, "invalid_request", False, "The handshake was invalid (e.g. a malformed query string)."),
    CloseCode(4001, "unauthorized", False, "No API key or token, or it is unknown, revoked or expired."),
    CloseCode(4003, "forbidden", False, "The key may not open realtime connections."),
    CloseCode(4009, "payload_too_large", False, "A frame was far over the size limit; the connection is closed."),
    CloseCode(4029, "connection_limit_exceeded", False, "The plan's simultaneous connections are all in use."),
    # 4100-4199: transient, reconnect with backoff (and resume with `since`)
    CloseCode(4100, "server_shutdown", True, "The server is shutting down or restarting."),
    CloseCode(4101, "heartbeat_timeout", True, "No frame from the client within the heartbeat timeout."),
    CloseCode(4102, "slow_consumer", True, "The client did not read fast enough; its send queue overflowed."),
    CloseCode(4103, "internal_error", True, "Unexpected server error."),
]}


def close_code(reason: str) -> CloseCode:
    return CLOSE_CODES[reason]
