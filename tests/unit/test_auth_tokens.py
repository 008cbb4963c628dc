"""User tokens, key ids and channel patterns: the pure parts of authentication."""

from __future__ import annotations

import time

import jwt
import pytest

from gateway.auth import Principal, verify_user_token
from gateway.channels import validate_channel_name, validate_channel_pattern
from gateway.errors import NuvemError
from gateway.keys import issue_user_token, key_id_for, signing_secret_for
from gateway.plans import PLANS

KEY = "nv_live_" + "A" * 32


def test_token_carries_kid_sub_exp_and_channels():
    token = issue_user_token(KEY, user_id="usr_abc", channels=["chat:*"], expires_in=60)
    assert jwt.get_unverified_header(token)["kid"] == key_id_for(KEY)
    claims = verify_user_token(token, signing_secret_for(KEY))
    assert claims["sub"] == "usr_abc" and claims["channels"] == ["chat:*"]
    assert time.time() + 55 < claims["exp"] <= time.time() + 61


def test_signing_secret_is_not_the_key():
    assert signing_secret_for(KEY) != KEY.encode()
    assert signing_secret_for(KEY) != signing_secret_for("nv_live_" + "B" * 32)


def test_expired_token_refused_with_a_message_that_says_expired():
    token = jwt.encode({"sub": "u", "exp": int(time.time()) - 5}, signing_secret_for(KEY), algorithm="HS256",
                       headers={"kid": key_id_for(KEY)})
    with pytest.raises(NuvemError) as e:
        verify_user_token(token, signing_secret_for(KEY))
    assert e.value.code == "unauthorized" and "expired" in e.value.message


def test_token_signed_with_another_key_refused():
    token = issue_user_token("nv_live_" + "B" * 32, user_id="u", channels=None, expires_in=60)
    with pytest.raises(NuvemError) as e:
        verify_user_token(token, signing_secret_for(KEY))
    assert e.value.code == "unauthorized" and "signature" in e.value.message


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # HS512 with a 32-byte secret, on purpose
def test_token_without_exp_or_with_other_alg_refused():
    no_exp = jwt.encode({"sub": "u"}, signing_secret_for(KEY), algorithm="HS256")
    with pytest.raises(NuvemError, match="'exp'"):
        verify_user_token(no_exp, signing_secret_for(KEY))
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, signing_secret_for(KEY), algorithm="HS256")
    with pytest.raises(NuvemError, match="'sub'"):
        verify_user_token(no_sub, signing_secret_for(KEY))
    claims = {"sub": "u", "exp": int(time.time()) + 60}
    # correctly signed with the key's own secret, but not HS256: refused all the same
    hs512 = jwt.encode(claims, signing_secret_for(KEY), algorithm="HS512")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (hs512, unsigned):
        with pytest.raises(NuvemError) as e:
            verify_user_token(token, signing_secret_for(KEY))
        assert e.value.code == "unauthorized" and "algorithm" in e.value.message, e.value.message


def test_issue_rejects_bad_arguments():
    with pytest.raises(ValueError):
        issue_user_token("not-a-key", user_id="u", channels=None, expires_in=60)
    with pytest.raises(ValueError):
        issue_user_token(KEY, user_id="", channels=None, expires_in=60)
    with pytest.raises(ValueError):
        issue_user_token(KEY, user_id="u", channels=None, expires_in=0)


def test_principal_patterns():
    key = Principal("key_1", "o", PLANS["free"], "publishable", ("chat:*", "lobby"))
    assert key.can_access("chat:sala-principal") and key.can_access("lobby")
    assert not key.can_access("orders:x") and not key.can_access("lobby2")
    assert not key.can_admin()
    token = Principal("key_1", "o", PLANS["free"], "token", ("chat:*", "orders:*"), user_id="u",
                      within=("chat:*",))
    assert token.can_access("chat:x") and not token.can_access("orders:x")  # narrower than its key
    assert Principal("k", "o", PLANS["free"], "secret", ("*",)).can_admin()
    with pytest.raises(NuvemError) as e:
        key.require_access("orders:x")
    assert e.value.code == "forbidden" and "orders:x" in e.value.message
    with pytest.raises(NuvemError) as e:
        key.require_admin()
    assert e.value.code == "forbidden" and e.value.http_status == 403


@pytest.mark.parametrize("name", ["chat:sala-principal", "notifications:usuarios", "a", "u@x.y_z", "x" * 200])
def test_valid_channel_names(name):
    validate_channel_name(name)


@pytest.mark.parametrize("name", ["", "x" * 201, "chat room", "chat/1", "ñ", "chat:*", 5])
def test_invalid_channel_names_name_the_grammar(name):
    with pytest.raises(NuvemError) as e:
        validate_channel_name(name)
    assert e.value.code == "invalid_request" and "A-Z a-z 0-9" in e.value.message


def test_channel_id_shaped_names_are_reserved():
    with pytest.raises(NuvemError) as e:
        validate_channel_name("ch_0123456789abcdef")
    assert e.value.code == "invalid_request" and "reserved" in e.value.message
    for name in ("ch_0123456789abcde", "ch_0123456789ABCDEF", "ch_0123456789abcdef0", "xch_0123456789abcdef"):
        validate_channel_name(name)


def test_channel_patterns():
    validate_channel_pattern("chat:*")
    with pytest.raises(NuvemError):
        validate_channel_pattern("chat:[ab]")
