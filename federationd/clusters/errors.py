"""Typed errors for everything that talks to a Kubernetes API server.

Callers branch on the class, never on message text. Messages are built from the HTTP
status and the server's ``Status`` object only: no request header, URL query or body ever
goes into one, so a bearer token cannot leak through an exception.

``ApiError`` is the root; ``ApiUnavailable`` covers every "try again later" that is not a
throttle (5xx, timeouts, refused connections, TLS failures), ``ApiThrottled`` carries the
server's ``Retry-After``.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request to a cluster failed. ``status`` is the HTTP code (0 when none arrived)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.details: dict[str, Any] = details or {}


class ApiBadRequest(ApiError):
    """400: the request could not be decoded (e.g. a field of the wrong JSON type)."""


class ApiNotFound(ApiError):
    """404: the object (or, with ``resource_missing``, its whole type) does not exist."""


class ApiConflict(ApiError):
    """409: stale resourceVersion, existing name, or a server-side apply conflict."""


class ApiInvalid(ApiError):
    """422: the object failed validation. ``causes`` are the server's field causes."""

    @property
    def causes(self) -> list[dict[str, Any]]:
        causes = self.details.get("causes") or []
        return [c for c in causes if isinstance(c, dict)]


class ApiForbidden(ApiError):
    """401 or 403: the credential was refused or lacks the permission."""


class ApiGone(ApiError):
    """410: the requested resourceVersion has been compacted away; re-list."""


class ApiUnavailable(ApiError):
    """5xx, a timeout, a refused connection, a TLS failure: the cluster did not serve us."""


class NotLeading(ApiError):
    """No request was sent: this process stopped leading before the write could start (it
    waited for its turn, or for its event log to record again). The leader writes instead;
    nothing failed on the cluster."""


class ApiThrottled(ApiUnavailable):
    """429: slow down. ``retry_after`` is the server's hint in seconds (None if absent)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


def error_for_status(
    status: int, body: bytes | dict[str, Any] | None, *, retry_after: float | None = None,
    what: str = "",
) -> ApiError:
    """Map an HTTP status and the server's ``Status`` body to the typed error."""
    status_obj: dict[str, Any] = {}
    if isinstance(body, dict):
        status_obj = body
    elif body:
        import json

        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict):
            status_obj = parsed
    reason = str(status_obj.get("reason") or "")
    server_msg = str(status_obj.get("message") or "")
    details = status_obj.get("details") if isinstance(status_obj.get("details"), dict) else None
    prefix = f"{what}: " if what else ""
    message = f"{prefix}HTTP {status}" + (f" {reason}" if reason else "") + (
        f": {server_msg}" if server_msg else "")
    kw: dict[str, Any] = {"status": status, "reason": reason, "details": details}
    if status == 400:
        return ApiBadRequest(message, **kw)
    if status == 404:
        return ApiNotFound(message, **kw)
    if status == 409:
        return ApiConflict(message, **kw)
    if status == 410:
        return ApiGone(message, **kw)
    if status == 422:
        return ApiInvalid(message, **kw)
    if status in (401, 403):
        return ApiForbidden(message, **kw)
    if status == 429:
        return ApiThrottled(message, retry_after=retry_after, **kw)
    if status >= 500:
        return ApiUnavailable(message, **kw)
    return ApiError(message, **kw)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; dates are not used by
    Kubernetes)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)
