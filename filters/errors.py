"""``FilterError``: the one error type of the filter engine (always the client's fault)."""

from __future__ import annotations

__all__ = ["FilterError"]


class FilterError(ValueError):
    """A filter was rejected. Always the client's fault: fix the filter.

    ``message`` names the problem (column, operator or literal), ``position`` says where (a
    0-based character offset in a SQL / PostgREST string, or a path like ``amount.gte`` in the
    object form; None when it applies to the whole filter), ``hint`` says what is allowed.
    The gateway turns it into ``invalid_request`` with ``to_dict()`` as the details.
    """

    fault = "client"

    def __init__(self, message: str, *, position: int | str | None = None, hint: str = "") -> None:
        self.message = message
        self.position = position
        self.hint = hint
        where = f" (at {position})" if position is not None else ""
        super().__init__(f"{message}{where}" + (f". Hint: {hint}" if hint else ""))

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"message": self.message}
        if self.position is not None:
            d["position"] = self.position
        if self.hint:
            d["hint"] = self.hint
        return d
