"""``cart-engine serve`` flags reach the HTTP server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import uvicorn

import gateway.app
from gateway.cli import _parser, main, settings_from


def test_keep_alive_outlasts_the_clients_own_idle_expiry() -> None:
    """The server must not be the side that closes an idle connection: a client reusing it
    at that instant loses its request (the flash-sale test's ``ReadError``)."""
    default = settings_from(_parser().parse_args(["serve"]))
    assert default.keep_alive > httpx.Limits().keepalive_expiry  # type: ignore[operator]
    assert settings_from(_parser().parse_args(["serve", "--keep-alive", "120"])).keep_alive \
        == 120.0


def test_serve_hands_the_keep_alive_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(gateway.app, "create_app", lambda settings: "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", "--keep-alive", "90", "--port", "0", "--ingress", "gateway"]) == 0
    assert seen["app"] == "app" and seen["timeout_keep_alive"] == 90.0 and seen["port"] == 0


def test_serve_runs_an_ingress_on_every_host_by_default_with_the_same_keep_alive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.bootstrap
    from gateway.ingress import uvicorn_config

    seen: dict[str, Any] = {}

    async def on_hosts(settings: Any) -> int:
        seen["settings"] = settings
        return 0

    monkeypatch.setattr(gateway.bootstrap, "serve_on_hosts", on_hosts)
    assert main(["serve", "--keep-alive", "90", "--port", "0"]) == 0
    settings = seen["settings"]
    assert settings.placement == "ray" and settings.ingress == "hosts"
    config = uvicorn_config(settings, "app")
    assert config.timeout_keep_alive == 90
    assert not config.server_header and config.date_header  # RFC 9110 6.6.1 wants Date


def test_a_secret_shorter_than_the_hash_is_refused_and_the_dev_secret_is_warned_about(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="auth_secret"):
        settings_from(_parser().parse_args(["serve", "--auth-secret", "short"]))
    monkeypatch.setattr(gateway.app, "create_app", lambda settings: "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.delenv("CART_ENGINE_AUTH_SECRET", raising=False)
    main(["serve", "--port", "0", "--ingress", "gateway"])
    assert "development secret" in capsys.readouterr().err
    main(["serve", "--port", "0", "--ingress", "gateway", "--auth-secret", "s" * 32])
    assert "development secret" not in capsys.readouterr().err


def test_serve_takes_the_merge_strategy_the_readme_documents() -> None:
    args = _parser().parse_args(["serve", "--merge-strategy", "keep_user"])
    assert settings_from(args).merge_strategy == "keep_user"
    assert settings_from(_parser().parse_args(["serve"])).merge_strategy == "sum"


def test_an_unknown_merge_strategy_is_refused() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        settings_from(_parser().parse_args(["serve", "--merge-strategy", "max"]))
