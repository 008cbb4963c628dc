"""The pure protocol module: decoding with clear errors, encoding, WebSocket framing, close codes."""

from __future__ import annotations

import ast
import json
import struct
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import protocol
from gateway.errors import ERRORS
from gateway.protocol import ProtocolError, decode_client_frame


def test_every_client_frame_decodes():
    assert decode_client_frame('{"type":"join","channel":"c","ref":1,"since":5}') == protocol.Join("c", 1, 5, None)
    assert decode_client_frame('{"type":"join","channel":"c","last":3}').last == 3
    assert decode_client_frame('{"type":"leave","channel":"c"}') == protocol.Leave("c")
    pub = decode_client_frame(b'{"type":"publish","channel":"c","event":"message","payload":{"a":[1,null]},"ref":"x"}')
    assert pub == protocol.Publish("c", "message", {"a": [1, None]}, "x")
    assert decode_client_frame('{"type":"track","channel":"c","user":{"id":1}}').user == {"id": 1}
    assert decode_client_frame('{"type":"untrack","channel":"c"}') == protocol.Untrack("c")
    assert decode_client_frame('{"type":"presence","channel":"c"}') == protocol.GetPresence("c")
    assert decode_client_frame('{"type":"ping"}') == protocol.Ping()


@pytest.mark.parametrize("raw, message, field", [
    ("{oops", "malformed JSON", None),
    ("42", "JSON object", None),
    ('{"ref": 3}', 'missing field "type"', None),
    ('{"type": "nope", "ref": 3}', "unknown frame type 'nope'", None),
    ('{"type": "join", "channel": 5}', "channel", "channel"),
    ('{"type": "join"}', "missing required field `channel`", "channel"),
    ('{"type": "join", "channel": "c", "last": 1.5}', "last", "last"),
    ('{"type": "track", "channel": "c", "user": []}', "user", "user"),
])
def test_bad_frames_raise_errors_that_name_the_problem(raw, message, field):
    with pytest.raises(ProtocolError) as e:
        decode_client_frame(raw)
    assert message in e.value.message
    assert e.value.field == field
    assert e.value.code == "invalid_request"


def test_error_echoes_the_ref_when_it_can():
    with pytest.raises(ProtocolError) as e:
        decode_client_frame('{"type": "join", "ref": "r-9", "since": "x"}')
    assert e.value.ref == "r-9"


@given(st.binary(max_size=64) | st.text(max_size=64))
def test_decoding_never_fails_with_anything_but_protocol_error(data):
    try:
        decode_client_frame(data)
    except ProtocolError:
        pass


def test_server_frames_encode_to_the_documented_json():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    msg = protocol.Message(channel="c", offset=7, event="e", payload={"x": 1}, published_at=at)
    assert json.loads(protocol.encode(msg)) == {
        "type": "message", "channel": "c", "offset": 7, "event": "e", "payload": {"x": 1},
        "publishedAt": "2026-01-02T03:04:05Z"}
    assert json.loads(protocol.encode(protocol.Ack(ref=1, channel="c", offset=0))) == {
        "type": "ack", "ref": 1, "channel": "c", "offset": 0}
    err = protocol.error_frame("rate_limit_exceeded", "slow down", ref=2, retryAfter=1.5)
    assert json.loads(protocol.encode(err)) == {
        "type": "error", "ref": 2, "error": {"code": "rate_limit_exceeded", "message": "slow down", "retryAfter": 1.5}}
    assert json.loads(protocol.encode(protocol.PresenceDiff(channel="c", event="join", user={"u": 1}))) == {
        "type": "presence_diff", "channel": "c", "event": "join", "user": {"u": 1}}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_ws_text_frame_header_lengths(size):
    payload = b"a" * size
    frame = protocol.ws_text_frame(payload)
    assert frame[0] == 0x81                          # FIN + text, no RSV bits
    assert frame[1] & 0x80 == 0                      # server frames are unmasked
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 65536:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == size and frame[4:] == payload
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == size and frame[10:] == payload


def test_close_code_table_ranges_and_reasons():
    codes = [c.code for c in protocol.CLOSE_CODES.values()]
    assert len(codes) == len(set(codes))
    for c in protocol.CLOSE_CODES.values():
        assert (4000 <= c.code < 4100 and not c.reconnect) or (4100 <= c.code < 4200 and c.reconnect), c
        assert len(c.reason.encode()) <= 123          # the WebSocket limit for a close reason
    for reason in ("connection_limit_exceeded", "unauthorized", "slow_consumer", "heartbeat_timeout",
                   "server_shutdown"):
        assert protocol.close_code(reason).reason == reason
    # reasons that are error codes are in the shared error table
    for reason in ("connection_limit_exceeded", "unauthorized", "forbidden", "slow_consumer", "payload_too_large"):
        assert reason in ERRORS


def test_protocol_module_is_pure():
    tree = ast.parse(Path(protocol.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"asyncio", "aiohttp", "psycopg", "redis", "socket"}


def _frame_classes() -> list[type]:
    out = []
    for base in (protocol._ClientFrame, protocol._ServerFrame):
        todo = [base]
        while todo:
            cls = todo.pop()
            todo += cls.__subclasses__()
            out += [cls] if cls is not base else []
    return out


_CAMEL = __import__("re").compile(r"^[a-z][A-Za-z0-9]*$")


def test_every_frame_field_is_camel_case_on_the_wire():
    classes = _frame_classes()
    assert {c.__name__ for c in classes} >= {"Join", "Publish", "Message", "Error", "PresenceDiff"}
    for cls in classes:
        for f in msgspec.structs.fields(cls):
            assert _CAMEL.match(f.encode_name), f"{cls.__name__}.{f.name} is sent as {f.encode_name!r}"
    # a snake_case attribute is renamed, not sent as is
    msg = protocol.Message(channel="c", offset=1, event="e", payload=None,
                           published_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert "publishedAt" in json.loads(protocol.encode(msg)) and "published_at" not in protocol.encode(msg).decode()


def test_every_error_detail_raised_by_the_gateway_is_camel_case():
    """Error details become fields of the error object: {"code", "message", "retryAfter", ...}."""
    root = Path(protocol.__file__).resolve().parent
    bad, calls = [], 0
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                    "NuvemError", "error_frame", "ProtocolError"):
                calls += 1
                bad += [f"{path.name}:{node.lineno} {kw.arg}" for kw in node.keywords
                        if kw.arg is not None and kw.arg != "ref" and not _CAMEL.match(kw.arg)]
    assert calls > 50 and not bad, f"snake_case error details: {bad}"
