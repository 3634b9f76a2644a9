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


def test_tokens_are_signed_as_pyjwt_signs_them_with_the_key_checked_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    secret = "signer-secret-0123456789abcdef0123456789"
    checks = []
    real = jwt.algorithms.HMACAlgorithm.prepare_key, jwt.algorithms.HMACAlgorithm.check_key_length

    def counted(self, key):  # type: ignore[no-untyped-def]
        checks.append(key)
        return real[0](self, key)

    def measured(self, key):  # type: ignore[no-untyped-def]
        checks.append(len(key))
        return real[1](self, key)

    monkeypatch.setattr(jwt.algorithms.HMACAlgorithm, "prepare_key", counted)
    monkeypatch.setattr(jwt.algorithms.HMACAlgorithm, "check_key_length", measured)
    now = int(auth.time.time())
    monkeypatch.setattr(auth.time, "time", lambda: now)
    tokens = [issue_token(secret, f"g_{i}", "guest", 60, groups=["gold"]) for i in range(3)]
    assert checks == [secret, len(secret)]  # once each for three tokens
    monkeypatch.undo()
    expected = jwt.encode({"sub": "g_1", "role": "guest", "iat": now, "exp": now + 60,
                           "groups": ["gold"]}, secret, algorithm="HS256")
    assert tokens[1] == expected
    assert jwt.decode(tokens[1], secret, algorithms=["HS256"])["sub"] == "g_1"


def test_a_secret_shaped_like_an_asymmetric_key_is_refused_every_time() -> None:
    pem = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
           "-----END PUBLIC KEY-----")
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError):
            issue_token(pem, "u1")
