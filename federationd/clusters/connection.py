"""One connection to one cluster: a sanitised kubeconfig turned into an HTTP client.

``connect()`` builds everything from the in-memory kubeconfig — nothing from the
process-wide ``Configuration`` default, no ``~/.kube/config``, no proxy from the
environment:

* TLS is always verified. The CA comes from ``certificate-authority-data`` straight into
  an ``ssl.SSLContext`` (``cadata=``), so no file holds it. A client certificate/key has
  to pass through files for ``load_cert_chain``; they are written 0600 into a private
  directory and removed before ``connect`` returns.
* Requests and watches share one HTTP/2 connection when the server offers ``h2``
  (``http2``, as client-go); otherwise each goes over pooled HTTP/1.1 connections.
* Every request carries a timeout (``request_timeout`` unless the caller gives one);
  watches pass their own read timeout.
* Every request is counted in ``rest_client_requests_total{code,method,host}`` with the
  cluster *name* as host, and its outcome feeds the cluster's ``ClusterHealth``.
* ``ClusterClient.api`` is a kubernetes_asyncio ``ApiClient`` on the same aiohttp
  session (its own ``Configuration``), for code that prefers the typed APIs; its
  requests get the same default timeout, metrics and health accounting. It is built,
  and ``kubernetes_asyncio.client`` imported, on first use: that package imports every
  generated API and model class (~65 MB resident, half a second), which the daemon,
  speaking JSON through ``request``, never needs.

``close()`` releases the session and connector; nothing else is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp
import msgspec

from events.types import ClusterName
from federationd import __version__
from federationd.clusters.discovery import Discovery
from federationd.clusters.errors import (
    ApiError,
    ApiUnavailable,
    error_for_status,
    parse_retry_after,
)
from federationd.clusters.health import ClusterHealth
from federationd.clusters.http2 import H2Channel, NoHttp2, NotProcessed
from federationd.clusters.kubeconfig import Kubeconfig, KubeconfigRejected, sanitise
from federationd.metrics import METRICS, Metrics

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

DEFAULT_REQUEST_TIMEOUT = 30.0
#: Largest single watch event line accepted (etcd's default request limit is 1.5 MiB).
_READ_BUFSIZE = 2**21
_EXEC_TIMEOUT = 30.0

Query = dict[str, str | int | bool | None]


def _encode_query(query: Query | None) -> str:
    if not query:
        return ""
    pairs = []
    for k, v in query.items():
        if v is None:
            continue
        pairs.append((k, ("true" if v else "false") if isinstance(v, bool) else str(v)))
    return ("?" + urlencode(pairs)) if pairs else ""


#: Seconds between re-reads of a token file (kubernetes_asyncio's in-cluster loader: 60).
TOKEN_REFRESH_PERIOD = 60.0

#: What every request says it comes from when the caller names no instance.
USER_AGENT = "federationd"


def user_agent(instance: str) -> str:
    """``federationd/VERSION (INSTANCE)``, client-go's ``program/version (details)``
    shape: the API server's audit log then tells which replica sent a request (two
    replicas authenticate as the same ServiceAccount). Only printable ASCII is kept, so
    an unusual identity cannot break the header."""
    clean = "".join(c for c in instance if " " <= c <= "~" and c not in "()")[:128]
    return f"federationd/{__version__} ({clean})" if clean else f"federationd/{__version__}"

#: The health reason of a cluster that answered 401 to the kubeconfig's credential.
UNAUTHORIZED_REASON = "credential refused (HTTP 401 Unauthorized)"


def unavailable_reason(exc: BaseException, *, timeout: float | None = None) -> str:
    """A short, credential-free description of why a request did not get a response."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return "TLS certificate verification failed"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        dns = type(exc).__name__ == "ClientConnectorDNSError"
        return dial_failure(exc.os_error, exc.host, exc.port, dns=dns)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, TimeoutError):
        return f"request timed out after {timeout:g}s" if timeout else "request timed out"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response interrupted"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "connection error"
    return type(exc).__name__


class WatchResponse(Protocol):
    """What a watch reads: the status, the headers (HTTP/2 names are lower case), and
    the body a line at a time (``b""`` at its end)."""

    status: int

    async def readline(self) -> bytes: ...


class _Http1Watch:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.status = resp.status
        self.readline = resp.content.readline


def dial_failure(os_error: BaseException, host: str, port: int | None, *, dns: bool = False) -> str:
    """Why a TCP connection could not be made; the cause decides what the user must fix:
    a name (DNS), a port, a route."""
    if dns or isinstance(os_error, socket.gaierror):
        return f"could not resolve host {host}"
    if isinstance(os_error, ConnectionRefusedError):
        return f"connection refused by {host}:{port}"
    if isinstance(os_error, TimeoutError):
        return f"connection to {host}:{port} timed out"
    return f"host {host}:{port} unreachable"


def _ssl_context(cfg: Kubeconfig, *, cert: bytes | None, key: bytes | None) -> ssl.SSLContext:
    if cfg.ca_data is not None:
        # Trust exactly the kubeconfig's CA, not the system store.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cadata=cfg.ca_data.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise KubeconfigRejected("certificate-authority-data is not a PEM certificate") from None
    elif cfg.ca_file:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=cfg.ca_file)
    else:
        ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert is not None and key is not None:
        with tempfile.TemporaryDirectory(prefix="federationd-") as private:
            os.chmod(private, 0o700)
            cert_path = os.path.join(private, "client.crt")
            key_path = os.path.join(private, "client.key")
            for path, data in ((cert_path, cert), (key_path, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                ctx.load_cert_chain(cert_path, key_path)
            except ssl.SSLError:
                raise KubeconfigRejected(
                    "client-certificate-data/client-key-data is not a usable key pair") from None
    elif cfg.client_cert_file and cfg.client_key_file:
        ctx.load_cert_chain(cfg.client_cert_file, cfg.client_key_file)
    return ctx


async def _exec_credential(exec_config: dict[str, Any]) -> dict[str, Any]:
    """Run an (explicitly allowed) exec plugin and return its ExecCredential status."""
    env = dict(os.environ)
    for item in exec_config.get("env") or []:
        if isinstance(item, dict) and "name" in item:
            env[str(item["name"])] = str(item.get("value", ""))
    proc = await asyncio.create_subprocess_exec(
        str(exec_config["command"]), *[str(a) for a in exec_config.get("args") or []],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
    try:
        async with asyncio.timeout(_EXEC_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise KubeconfigRejected("exec credential plugin timed out") from None
    if proc.returncode != 0:
        raise KubeconfigRejected(f"exec credential plugin exited with {proc.returncode}")
    try:
        status = json.loads(out).get("status") or {}
    except (ValueError, AttributeError):
        raise KubeconfigRejected("exec credential plugin printed no ExecCredential") from None
    return status if isinstance(status, dict) else {}


def _shared_rest_client(owner: ClusterClient, proxy: str | None, server_hostname: str | None) -> Any:
    """kubernetes_asyncio's REST client on ``owner``'s session, with a default timeout
    and the same accounting as ``ClusterClient.request``."""
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubernetes_asyncio.client.rest import RESTClientObject

    class SharedRestClient(RESTClientObject):
        def __init__(self) -> None:
            # Deliberately not calling super().__init__: it would build a second session
            # from file-based TLS settings.
            self.pool_manager = owner.session
            self.proxy = proxy or ""
            self.proxy_headers: dict[str, str] = {}
            self.server_hostname = server_hostname or ""

        async def request(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
            if kw.get("_request_timeout") is None:
                kw["_request_timeout"] = owner.request_timeout
            headers = kw.get("headers")
            if owner._token_file is not None and isinstance(headers, dict):
                headers["Authorization"] = owner._headers(None)["Authorization"]
            try:
                resp = await super().request(method, url, *args, **kw)
            except ApiException as e:
                owner._account(method, e.status or 0)
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                owner._account(method, None, reason=unavailable_reason(e))
                raise
            owner._account(method, resp.status)
            return resp

    return SharedRestClient()


class ClusterClient:
    """An open connection to one cluster. Build with ``connect()``; ``close()`` when done."""

    def __init__(
        self,
        *,
        name: ClusterName,
        config: Kubeconfig,
        session: aiohttp.ClientSession,
        auth_headers: dict[str, str],
        request_timeout: float,
        health: ClusterHealth,
        metrics: Metrics,
        token_file: str | None = None,
        token_refresh: float = TOKEN_REFRESH_PERIOD,
        user_agent: str = USER_AGENT,
        h2: H2Channel | None = None,
    ) -> None:
        self.name = name
        self.user_agent = user_agent
        # A token read from a file (a bound service-account token) rotates: re-read it
        # every ``token_refresh`` seconds and after a 401, as kubernetes_asyncio's
        # in-cluster loader and client-go do.
        self._token_file = token_file
        self._token_refresh = token_refresh
        self._token_read = time.monotonic()
        self.config = config
        self.session = session
        self.request_timeout = request_timeout
        self.health = health
        self._metrics = metrics
        self._auth = auth_headers
        self._proxy = config.proxy_url or None
        self._server_hostname = config.tls_server_name or None
        self.discovery = Discovery(lambda path: self.request("GET", path))
        self._h2 = h2
        self._closed = False

    @property
    def server(self) -> str:
        return self.config.server

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"ClusterClient(name={self.name!r}, server={self.server!r})"

    @cached_property
    def api(self) -> ApiClient:
        """A typed-API client on this connection (built on first use)."""
        from kubernetes_asyncio.client import ApiClient, Configuration

        conf = Configuration(host=self.config.server)
        conf.verify_ssl = True
        if "Authorization" in self._auth and self.config.token is not None:
            conf.api_key = {"BearerToken": self.config.token}
            conf.api_key_prefix = {"BearerToken": "Bearer"}
        # ApiClient.__init__ insists on building a RESTClientObject, which would open a
        # session; construct without it and attach ours.
        api: ApiClient = ApiClient.__new__(ApiClient)
        api.configuration = conf
        api.pool_threads = 1
        api.rest_client = _shared_rest_client(self, self._proxy, self._server_hostname)
        api.default_headers = {}
        api.cookie = ""
        api.user_agent = self.user_agent
        for k, v in self._auth.items():
            if k != "Authorization" or self.config.token is None:
                api.default_headers[k] = v
        api.client_side_validation = conf.client_side_validation
        return api

    def _account(self, method: str, status: int | None, *, reason: str = "") -> None:
        code = str(status) if status else "<error>"
        self._metrics.rest_client_requests_total.labels(
            code=code, method=method.upper(), host=self.name).inc()
        if status is None:
            self.health.record_failure(reason or "connection error")
        elif status == 401:
            self._reread_token(force=True)
            self.health.record_unauthorized(UNAUTHORIZED_REASON)
        else:
            self.health.record_success()

    def url(self, path: str, query: Query | None = None) -> str:
        return self.config.server + path + _encode_query(query)

    def _reread_token(self, *, force: bool = False) -> None:
        if self._token_file is None:
            return
        now = time.monotonic()
        if not force and now - self._token_read < self._token_refresh:
            return
        self._token_read = now
        try:
            token = Path(self._token_file).read_text(encoding="utf-8").strip()
        except OSError:
            return  # keep the last one; a 401 will say so
        if token:
            self._auth["Authorization"] = f"Bearer {token}"

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        self._reread_token()
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        headers.update(self._auth)
        if extra:
            headers.update(extra)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
        request_timeout: float | None = None,
        what: str = "",
    ) -> Any:
        """One request; the parsed JSON response (None when empty). Raises ``ApiError``s.

        ``what`` prefixes error messages (e.g. ``"get Service/ns/name"``)."""
        if self._closed:
            raise ApiUnavailable(f"{what or method}: connection to {self.name} is closed")
        data: bytes | None = None
        headers: dict[str, str] = {}
        if body is not None:
            data = body if isinstance(body, bytes) else msgspec.json.encode(body)
            headers["Content-Type"] = content_type
        t = request_timeout if request_timeout is not None else self.request_timeout
        answer = None
        if self._h2 is not None and not self._h2.refused:
            answer = await self._h2_request(method, path, query, data, headers, t, what)
        if answer is not None:
            status, payload, retry_after = answer
        else:
            try:
                async with self.session.request(
                    method, self.url(path, query), data=data, headers=self._headers(headers),
                    timeout=aiohttp.ClientTimeout(total=t), proxy=self._proxy,
                    server_hostname=self._server_hostname,
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                reason = unavailable_reason(e, timeout=t)
                self._account(method, None, reason=reason)
                prefix = f"{what}: " if what else ""
                raise ApiUnavailable(f"{prefix}{self.name}: {reason}") from None
        self._account(method, status)
        if not 200 <= status < 300:
            raise error_for_status(status, payload, retry_after=retry_after, what=what)
        if not payload:
            return None
        try:
            # msgspec: twice as fast as json, and the decoded objects share their keys
            return msgspec.json.decode(payload)
        except ValueError:
            raise ApiError(f"{what or path}: response is not JSON", status=status) from None

    async def _h2_request(
        self, method: str, path: str, query: Query | None, data: bytes | None,
        headers: dict[str, str], within: float, what: str,
    ) -> tuple[int, bytes, float | None] | None:
        """The request on the cluster's HTTP/2 connection: status, body and Retry-After;
        None when it has to go over HTTP/1.1 instead."""
        assert self._h2 is not None
        h2s = None
        try:
            async with asyncio.timeout(within):
                for attempt in (1, 2):
                    h2s = None
                    try:
                        h2s = await self._h2.open(
                            method.upper(), path + _encode_query(query), self._headers(headers), data)
                        payload = await h2s.read()
                        break
                    except NotProcessed:
                        # the connection went away under a request it never delivered
                        # (an idle GOAWAY): once more, on a new one, as Go's client does
                        if attempt == 2:
                            raise
                    finally:
                        if h2s is not None:
                            h2s.close()
        except NoHttp2:
            return None
        except OSError as e:  # also ssl.SSLError and TimeoutError
            reason = self._h2_failure(e, within)
            self._account(method, None, reason=reason)
            prefix = f"{what}: " if what else ""
            raise ApiUnavailable(f"{prefix}{self.name}: {reason}") from None
        assert h2s is not None
        return h2s.status, payload, parse_retry_after(h2s.headers.get("retry-after"))

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, query: Query | None = None, read_timeout: float,
        what: str = "",
    ) -> AsyncIterator[WatchResponse]:
        """A streaming GET (watch), over the cluster's HTTP/2 connection when the server
        speaks it (``http2``), else on an HTTP/1.1 connection of its own. Connecting is bounded
        by ``request_timeout``, each read on HTTP/1.1 by ``read_timeout``; the response
        is closed (an HTTP/2 stream reset) when the block exits, also on cancellation."""
        if self._closed:
            raise ApiUnavailable(f"{what or 'watch'}: connection to {self.name} is closed")
        prefix = f"{what}: " if what else ""
        # the response, how to read the rest of it, its Retry-After, how to close it
        opened: tuple[WatchResponse, Callable[[], Awaitable[bytes]], str | None, Callable[[], None]] | None = None
        if self._h2 is not None and not self._h2.refused:
            try:
                h2s = await self._h2.open("GET", path + _encode_query(query), self._headers(None))
            except NoHttp2:
                pass  # on HTTP/1.1 below
            except OSError as e:  # also ssl.SSLError and TimeoutError
                reason = self._h2_failure(e, self.request_timeout)
                self._account("GET", None, reason=reason)
                raise ApiUnavailable(f"{prefix}{self.name}: {reason}") from None
            else:
                opened = (h2s, h2s.read, h2s.headers.get("retry-after"), h2s.close)
        if opened is None:
            t = aiohttp.ClientTimeout(
                total=None, connect=self.request_timeout, sock_connect=self.request_timeout,
                sock_read=read_timeout)
            try:
                resp = await self.session.request(
                    "GET", self.url(path, query), headers=self._headers(None), timeout=t,
                    proxy=self._proxy, server_hostname=self._server_hostname)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                reason = unavailable_reason(e, timeout=self.request_timeout)
                self._account("GET", None, reason=reason)
                raise ApiUnavailable(f"{prefix}{self.name}: {reason}") from None
            opened = (_Http1Watch(resp), resp.read, resp.headers.get("Retry-After"), resp.close)
        watch, read, retry_after, close = opened
        try:
            self._account("GET", watch.status)
            if not 200 <= watch.status < 300:
                try:
                    async with asyncio.timeout(self.request_timeout):
                        payload = await read()
                except (aiohttp.ClientError, OSError, ValueError):  # TimeoutError too
                    payload = b""
                raise error_for_status(
                    watch.status, payload, retry_after=parse_retry_after(retry_after), what=what)
            yield watch
        finally:
            close()

    def connection_info(self) -> dict[str, Any]:
        """How this client reaches its cluster (``/debug/runtime``): the protocol, and over
        HTTP/2 the connections dialled so far and the streams open now."""
        if self._h2 is None or self._h2.refused:
            return {"protocol": "http/1.1"}
        return {"protocol": "h2", "dials": self._h2.dials, "streams": self._h2.streams}

    def _h2_failure(self, exc: OSError, timeout: float) -> str:
        if isinstance(exc, ssl.SSLError | TimeoutError):
            return unavailable_reason(exc, timeout=timeout)
        if isinstance(exc, ConnectionResetError):
            return "server disconnected"
        u = urlsplit(self.config.server)
        return dial_failure(exc, u.hostname or "", u.port or 443)

    async def server_version(self) -> str:
        """The API server's ``gitVersion`` (GET /version); also a cheap reachability probe
        that updates ``health``."""
        info = await self.request("GET", "/version", what=f"version of {self.name}")
        return str((info or {}).get("gitVersion", ""))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._h2 is not None:
            self._h2.close()
        await self.session.close()


async def connect(
    kubeconfig: bytes | str | dict[str, Any] | Kubeconfig,
    *,
    name: str | None = None,
    context: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    allow_exec: bool = False,
    allow_files: bool = False,
    metrics: Metrics | None = None,
    health: ClusterHealth | None = None,
    connector_limit: int = 256,
    clock: Callable[[], float] | None = None,
    user_agent: str = USER_AGENT,
    http2: bool = True,
) -> ClusterClient:
    """Open a client for the kubeconfig's chosen context. No request is made here; the
    first request shows whether the cluster is reachable (see ``ClusterClient.health``).
    Raises ``KubeconfigRejected`` for an unsafe or unusable kubeconfig. ``user_agent``
    names the caller in the API server's audit log (see :func:`user_agent`). ``http2``
    lets watches share one HTTP/2 connection when the server offers it (not through a
    proxy)."""
    metrics = metrics or METRICS
    cfg = kubeconfig if isinstance(kubeconfig, Kubeconfig) else sanitise(
        kubeconfig, context=context, allow_exec=allow_exec, allow_files=allow_files)
    cluster = ClusterName(name or cfg.context)
    if health is None:
        health = (ClusterHealth(cluster, metrics=metrics, clock=clock) if clock
                  else ClusterHealth(cluster, metrics=metrics))

    token = cfg.token
    cert, key = cfg.client_cert_data, cfg.client_key_data
    if cfg.token_file:
        try:
            token = (await asyncio.to_thread(
                Path(cfg.token_file).read_text, encoding="utf-8")).strip()
        except OSError:
            raise KubeconfigRejected("tokenFile cannot be read") from None
    if cfg.exec_config is not None:
        status = await _exec_credential(cfg.exec_config)
        token = status.get("token") or token
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            cert = str(status["clientCertificateData"]).encode()
            key = str(status["clientKeyData"]).encode()
    auth: dict[str, str] = {}
    if token:
        auth["Authorization"] = f"Bearer {token}"
    elif cfg.username is not None and cfg.password is not None:
        auth["Authorization"] = aiohttp.BasicAuth(cfg.username, cfg.password).encode()

    ctx = _ssl_context(cfg, cert=cert, key=key)
    channel = None
    u = urlsplit(cfg.server)
    if http2 and not cfg.proxy_url and u.scheme == "https" and u.hostname:
        # its own context: the channel offers ALPN h2, which aiohttp must not
        channel = H2Channel(
            host=u.hostname, port=u.port or 443, authority=u.netloc,
            ssl_context=_ssl_context(cfg, cert=cert, key=key),
            server_hostname=cfg.tls_server_name or None, connect_timeout=request_timeout,
            max_line=_READ_BUFSIZE, name=str(cluster))
    # HTTP/1.1, for a server (or proxy) without HTTP/2 and requests beyond its stream
    # limit: a watch holds a connection for its lifetime, so the pool must fit all
    # reflectors of a cluster plus the writers; a full pool would silently stall
    # requests behind watches.
    connector = aiohttp.TCPConnector(ssl=ctx, limit=connector_limit)
    session = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=_READ_BUFSIZE)
    try:
        return ClusterClient(
            name=cluster, config=cfg, session=session, auth_headers=auth,
            request_timeout=request_timeout, health=health, metrics=metrics,
            token_file=cfg.token_file or None, user_agent=user_agent, h2=channel)
    except BaseException:
        await session.close()
        raise
