"""Which Redis the service uses, and how its URL is shown.

- `resolve_redis`: the configured Redis, which must answer (an unreachable one, or one that
  refuses the password, is a startup error: silently keeping orders elsewhere would lose
  them), or, only when none is configured, the bundled one;
- `redacted`: a Redis URL without its password, for anything printed or logged.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway.settings import GatewaySettings
from snapshots.bundled import BundledRedis
from snapshots.redis_store import connect

#: Seconds the configured Redis has to answer a PING at start.
PING_TIMEOUT = 5.0


class RedisUnusable(RuntimeError):
    """The configured Redis does not answer or refuses the client; the message holds the
    URL without its password, never the password."""


def redacted(url: str) -> str:
    """``url`` with its password (in the user part or a ``password`` query parameter, as
    redis-py reads both) replaced by ``***``; the rest kept, so an operator sees which Redis."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs],
                              safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


async def check_redis(url: str, within: float = PING_TIMEOUT) -> None:
    """PING ``url``. Raises RedisUnusable (URL redacted) if it does not answer within
    ``within`` seconds, refuses the password, or fails otherwise."""
    client = connect(url, max_connections=2)
    try:
        await asyncio.wait_for(client.ping(), within)
    except Exception as e:  # noqa: BLE001 - every failure is the same answer: not usable
        reason = "no answer" if isinstance(e, TimeoutError) else \
            f"{type(e).__name__}: {e}"
        password = urlsplit(url).password
        if password:
            reason = reason.replace(password, "***")
        raise RedisUnusable(f"Redis at {redacted(url)} is not usable ({reason})") from None
    finally:
        await client.aclose()


async def resolve_redis(settings: GatewaySettings) -> tuple[str, BundledRedis | None]:
    """The Redis URL to use and the bundled server started for it (None if configured;
    an empty URL counts as none).

    Raises RedisUnusable when ``settings.redis_url`` is set and does not answer a PING or
    refuses the password: the bundled Redis is only for when none is configured.
    """
    url = settings.redis_url.get_secret_value() if settings.redis_url is not None else ""
    if url:
        await check_redis(url)
        return url, None
    bundled = BundledRedis(settings.data_dir / "redis")
    return await asyncio.to_thread(bundled.start), bundled
