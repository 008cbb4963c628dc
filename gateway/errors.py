"""The one table of error codes, shared by REST and WebSocket (documented in docs/protocol.md).

Every error a client sees has the same shape on both transports::

    {"error": {"code": "rate_limit_exceeded", "message": "...", "retryAfter": 12.5}}

Raise ``NuvemError(code, message, **details)``; REST turns it into the HTTP status below, the
WebSocket into an ``error`` frame (or, for the codes with a close code, a close).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    http_status: int
    description: str
    fault: str  # "client" (fix the request) or "server" (retry later)


ERRORS: dict[str, ErrorCode] = {e.code: e for e in [
    ErrorCode("invalid_request", 400, "Malformed or invalid request; the message names the field.", "client"),
    ErrorCode("unauthorized", 401, "No API key or token, or it is unknown, revoked or expired.", "client"),
    ErrorCode("forbidden", 403, "The key or token is valid but not allowed to do this.", "client"),
    ErrorCode("channel_not_found", 404, "No channel with that id or name.", "client"),
    ErrorCode("not_found", 404, "No such resource.", "client"),
    ErrorCode("conflict", 409, "The resource already exists.", "client"),
    ErrorCode("payload_too_large", 413, "The request or frame is over the size limit.", "client"),
    ErrorCode("connection_limit_exceeded", 429, "Plan or channel connection limit reached; upgrade the plan.", "client"),
    ErrorCode("rate_limit_exceeded", 429, "Channel rate limit reached; retry after retryAfter seconds.", "client"),
    ErrorCode("message_quota_exceeded", 429, "Monthly message quota of the plan used up.", "client"),
    ErrorCode("history_gap", 410, "Retention dropped messages after the requested offset; resume from resumeFrom.", "client"),
    ErrorCode("slow_consumer", 429, "The client did not read fast enough; its send queue overflowed.", "client"),
    ErrorCode("internal_error", 500, "Unexpected server error; safe to retry.", "server"),
    ErrorCode("unavailable", 503, "A backend (database, broker) is unavailable; retry with backoff.", "server"),
]}


class NuvemError(Exception):
    """An error with a code from ``ERRORS``, a human message naming the problem, and details."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return ERRORS[self.code].http_status

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}
