"""Bearer tokens: what this process signed is known without a signature check, and still
expires; anything else is verified by PyJWT."""

from __future__ import annotations

import jwt
import pytest

from gateway import auth
from gateway.auth import AuthError, decode_token, issue_token

SECRET = "unit-secret-0123456789abcdef0123456789"


def test_a_token_signed_here_is_known_without_verifying_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    token = issue_token(SECRET, "g_abc", "guest", 60, groups=["gold"])

    def no_decode(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("verified again")

    monkeypatch.setattr(jwt, "decode", no_decode)
    caller = decode_token(SECRET, token)
    assert (caller.sub, caller.role, caller.groups) == ("g_abc", "guest", ("gold",))


def test_a_token_signed_here_still_expires_and_another_secret_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    token = issue_token(SECRET, "u1", ttl=60)
    now = auth.time.time()
    monkeypatch.setattr(auth.time, "time", lambda: now + 61)
    with pytest.raises(AuthError) as e:
        decode_token(SECRET, token)
    assert e.value.code == "token_expired"
    monkeypatch.undo()
    with pytest.raises(AuthError) as e:
        decode_token("another-secret-0123456789abcdef0123", token)
    assert e.value.code == "invalid_token"


def test_a_subject_its_own_checks_refuse_is_refused_when_used() -> None:
    token = issue_token(SECRET, "@admin")
    with pytest.raises(AuthError) as e:
        decode_token(SECRET, token)
    assert e.value.code == "invalid_token"
