"""Who may talk to the app: the Host check, the cross-site check and the headers every response carries.

Written as one plain ASGI middleware rather than Starlette's TrustedHostMiddleware plus a CSRF package:
TrustedHostMiddleware answers in plain text (the API answers every error in JSON), the CSRF packages
need a token round trip the API's scripted clients (curl, httpx) do not make, and a browser already
says where a request comes from (`Origin`, `Sec-Fetch-Site`); a script outside a browser has no
cookie to abuse and needs the bearer token where one is set.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
EVERY_INTERFACE = frozenset({"0.0.0.0", "::", ""})

# Where a browser may load the page's parts from: this server only (the page has no external asset);
# the inline script and style are allowed by their hashes (see page.py), nothing can frame the page.
BASE_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def served_hosts(bound: str, allow: list[str]) -> frozenset[str] | None:
    """The host names requests may carry: loopback's, the address listened on and `allow`; None (any
    name) when listening on every interface without `allow` (a token is required there)."""
    extra = {h.strip().lower().strip("[]") for h in allow if h.strip()}
    if bound in EVERY_INTERFACE and not extra:
        return None
    named = {bound.lower().strip("[]")} - EVERY_INTERFACE
    return frozenset(LOOPBACK_NAMES | extra | named)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host name, port) of a URL, the port filled in from the scheme."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port or (443 if parts.scheme == "https" else 80)


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    try:
        return _origin(origin) == _origin(f"{scheme}://{host}")
    except ValueError:  # a port that is not a number
        return False


def is_guarded_path(path: str) -> bool:
    """Paths a page on another site must not reach, even by GET: the API (a preview fetches a URL, a
    stream's video is a live camera), the metrics and the API's description."""
    return path.startswith(("/api/", "/docs")) or path in ("/metrics", "/openapi.json")


class RequestGuard:
    """Refuses requests for a host name this server does not serve (DNS rebinding: 421) and requests a
    page on another origin makes (403): any that changes state, and any to a guarded path. Adds the
    security headers (and the page's Content-Security-Policy) to every response."""

    def __init__(self, inner, hosts: frozenset[str] | None, origins: list[str], csp: dict[str, str]):
        self.inner, self.hosts, self.csp = inner, hosts, csp
        self.origins = {o.rstrip("/").lower() for o in origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and _host_name(host) not in self.hosts:
            return await _refuse(
                send, 421, f"this server does not serve the host name {host[:80]!r} (see --allow-host)"
            )
        refusal = self._cross_site(scope, headers, host)
        if refusal:
            return await _refuse(send, 403, refusal)
        csp = self.csp.get(scope["path"], self.csp.get("*", ""))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = list(BASE_HEADERS)
                if csp:
                    extra.append((b"content-security-policy", csp.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.inner(scope, receive, send_with_headers)

    def _cross_site(self, scope, headers: dict[str, str], host: str) -> str | None:
        origin = headers.get("origin")
        site = headers.get("sec-fetch-site")  # set by every current browser; absent from scripts
        if origin is not None and origin.rstrip("/").lower() in self.origins:
            return None
        from_elsewhere = site in ("cross-site", "same-site") or (
            origin is not None and not _same_origin(origin, scope.get("scheme", "http"), host)
        )
        if not from_elsewhere:
            return None
        changes_state = scope["method"] not in ("GET", "HEAD", "OPTIONS")
        if changes_state or is_guarded_path(scope["path"]):
            where = origin or f"a {site} page"
            return f"cross-site request from {where[:80]} refused (see --allow-origin)"
        return None  # a link from elsewhere to the page itself: the page opens (and asks for the token)


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *BASE_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
