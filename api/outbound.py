"""The outbound URL policy: where tenant-given URLs (tool URLs, provider baseUrls) may connect.

A URL from a spec is hostile input. It must be http(s), carry no credentials, stay short, and every address
its host resolves to must be public: loopback, private (RFC 1918, CGNAT, ULA), link-local, cloud metadata,
unspecified, multicast and reserved targets are refused, also when written as an IPv4-mapped, IPv4-compatible,
NAT64 or 6to4 IPv6 address, or as a decimal/octal/hex IPv4 number. The platform may still allow chosen
networks (`PlatformSettings.outbound_allowed_cidrs`; tests allow 127.0.0.1/32); metadata addresses never.

The check happens where the connection is made: the HTTP clients from `httpx_client`/`httpx2_client` resolve
the host inside their network backend, check every address and connect to a checked one, while TLS still
verifies the URL's host name (SNI) and the Host header is unchanged. So a DNS answer cannot change between
check and connect, and every redirect hop (bounded) is checked the same way. Websocket clients get the same
pinning through `websocket_connect_kwargs`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import structlog

if TYPE_CHECKING:
    from voxfleet.api.settings import PlatformSettings

log = structlog.get_logger("voxfleet.outbound")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2048  # a URL in a spec
MAX_REQUEST_URL_LENGTH = 16384  # a request's URL, which may carry a GET tool's arguments as its query string
MAX_REDIRECTS = 3
MAX_ADDRESSES = 16
HTTP_SCHEMES = ("http", "https")
WEBSOCKET_SCHEMES = ("ws", "wss")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# Instance metadata services hand out cloud credentials: refused even inside an allowed network.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.internal"})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class OutboundURLRefused(ValueError):
    """A tenant-given URL the policy will not connect to. The message names the URL (without credentials or
    query string, which may hold secrets) and why."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        self.reason = reason
        super().__init__(f"outbound URL {self.url} refused: {reason}")


class _AddressRefused(Exception):
    """Raised inside a network backend, which knows the host but not the URL; the transport adds the URL."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def redact_url(url: str) -> str:
    """scheme://host[:port]/path: what an error may show of a URL (no userinfo, query or fragment)."""
    text = str(url)[:MAX_URL_LENGTH]
    try:
        parts = urlsplit(text)
        host = parts.netloc.rpartition("@")[2]
        path = parts.path if len(parts.path) <= 200 else parts.path[:200] + "..."
        if parts.scheme and host:
            return f"{parts.scheme}://{host}{path}"
    except ValueError:
        pass
    return "<unparseable URL>"


@dataclass(frozen=True)
class OutboundTarget:
    """A URL that passed the syntax checks: normalised host (no brackets, lower case) and port."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress | None  # set when the host is an IP literal (in any IPv4 spelling)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host names without DNS, including the inet_aton spellings (2130706433, 0x7f.1, 0177.1)
    that resolvers and browsers accept; None for a DNS name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host.lower()) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo), as the connection would use it."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 scope id
        if address not in addresses:
            addresses.append(address)
    return addresses


class OutboundPolicy:
    """Checks and pins outbound connections to tenant-given URLs. Build one per process and share it."""

    def __init__(self, allowed_cidrs: Iterable[str] = (), *, resolver: Resolver | None = None,
                 max_redirects: int = MAX_REDIRECTS, resolve_timeout_s: float = 5.0) -> None:
        self.allowed_networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in allowed_cidrs)
        self.max_redirects = max_redirects
        self._resolver = resolver or system_resolver
        self._resolve_timeout_s = resolve_timeout_s

    @classmethod
    def from_settings(cls, settings: "PlatformSettings", **kwargs: Any) -> "OutboundPolicy":
        return cls(settings.outbound_allowed_cidrs, **kwargs)

    # -- the checks -------------------------------------------------------------------------------------------

    def address_refusal(self, address: IPAddress | str) -> str | None:
        """Why this address may not be reached (None: it may)."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if ip in METADATA_ADDRESSES:
            return f"{ip} is a cloud metadata address"
        inner_metadata = isinstance(ip, ipaddress.IPv6Address) and embedded_ipv4(ip) in METADATA_ADDRESSES
        if inner_metadata:  # before the allowed networks: an allowed ::/0 must not let ::ffff:169.254.169.254 by
            return f"{ip} embeds IPv4 {embedded_ipv4(ip)}: a cloud metadata address"
        if any(ip in network for network in self.allowed_networks):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            if ip in _NAT64_LOCAL:
                return f"{ip} is a local-use NAT64 address"
            inner = embedded_ipv4(ip)
            if inner is not None:
                why = self.address_refusal(inner)
                return None if why is None else f"{ip} embeds IPv4 {inner}: {why}"
        return _category_refusal(ip)

    def check_url(self, url: str, schemes: tuple[str, ...] = HTTP_SCHEMES,
                  max_length: int = MAX_URL_LENGTH) -> OutboundTarget:
        """The syntax checks (no DNS): scheme, credentials, length, host and port; IP literals checked here."""
        if not isinstance(url, str) or not url:
            raise OutboundURLRefused(str(url), "the URL is empty")
        if len(url) > max_length:
            raise OutboundURLRefused(url, f"the URL is longer than {max_length} characters")
        if any(c.isspace() or ord(c) < 0x20 or c == "\\" for c in url):
            raise OutboundURLRefused(url, "the URL contains whitespace, control characters or backslashes")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise OutboundURLRefused(url, f"the URL does not parse ({error})") from None
        scheme = parts.scheme.lower()
        if scheme not in schemes:
            raise OutboundURLRefused(url, f"scheme {scheme or '(none)'!r} is not allowed (use {' or '.join(schemes)})")
        if "@" in parts.netloc:
            raise OutboundURLRefused(url, "credentials in the URL (user@host) are not allowed; use headers from a"
                                          " Secret")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise OutboundURLRefused(url, "the URL has no host")
        if host in METADATA_HOSTS:
            raise OutboundURLRefused(url, f"{host} is a cloud metadata host")
        address = parse_ip_literal(host)
        if address is None:
            try:
                host.encode("idna")
            except UnicodeError:
                raise OutboundURLRefused(url, "the host name is not a valid (IDNA) DNS name") from None
        else:
            why = self.address_refusal(address)
            if why is not None:
                raise OutboundURLRefused(url, why)
        return OutboundTarget(url=url, scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme],
                              address=address)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address the host resolves to, when all of them may be reached; _AddressRefused otherwise."""
        literal = parse_ip_literal(host.strip("[]"))
        if literal is not None:
            addresses = [str(literal)]
        else:
            if host.lower().rstrip(".") in METADATA_HOSTS:
                raise _AddressRefused(f"{host} is a cloud metadata host")
            try:
                async with asyncio.timeout(self._resolve_timeout_s):
                    addresses = await self._resolver(host, port)
            except (OSError, TimeoutError) as error:
                raise _AddressRefused(f"{host} does not resolve ({type(error).__name__})") from None
            if not addresses:
                raise _AddressRefused(f"{host} does not resolve")
        for address in addresses[:MAX_ADDRESSES]:
            why = self.address_refusal(address)
            if why is not None:
                raise _AddressRefused(why if literal is not None else f"{host} resolves to a refused address ({why})")
        return [str(ipaddress.ip_address(a)) for a in addresses[:MAX_ADDRESSES]]

    async def check(self, url: str, schemes: tuple[str, ...] = HTTP_SCHEMES) -> tuple[OutboundTarget, list[str]]:
        """The full check: syntax, then resolution; returns the target and the addresses that may be used."""
        target = self.check_url(url, schemes)
        try:
            return target, await self.resolve(target.host, target.port)
        except _AddressRefused as refused:
            raise OutboundURLRefused(url, refused.reason) from None

    # -- clients that connect only where the checks allow --------------------------------------------------------

    def httpx_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client whose every connection (and redirect hop) is checked and pinned."""
        return _client(self, httpx, kwargs)

    def httpx2_client(self, **kwargs: Any) -> Any:
        """The same for httpx2 (the openai and anthropic SDKs' HTTP library)."""
        import httpx2
        return _client(self, httpx2, kwargs)

    async def websocket_connect_kwargs(self, url: str) -> dict[str, Any]:
        """Arguments for `websockets.connect(url, **kwargs)` that connect to a checked address of the URL's host,
        TLS still verifying the host name; cross-origin redirects are then refused by websockets itself."""
        target, addresses = await self.check(url, WEBSOCKET_SCHEMES + HTTP_SCHEMES)
        kwargs: dict[str, Any] = {"host": addresses[0], "port": target.port, "proxy": None}
        if target.scheme in ("wss", "https"):
            kwargs["server_hostname"] = target.host
        return kwargs


def _category_refusal(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return f"{ip} is a carrier-grade NAT (shared) address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved:
        return f"{ip} is a reserved address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return f"{ip} is a site-local address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


# -- pinning inside httpx / httpx2 ------------------------------------------------------------------------------


class _PinningBackend:
    """An httpcore network backend that resolves and checks the host, then connects to a checked address.
    httpcore still passes the original host name as TLS server_hostname, so certificates are verified."""

    def __init__(self, policy: OutboundPolicy, inner: Any) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        addresses = await self._policy.resolve(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except Exception as failure:  # try the next checked address, as a resolver-driven connect would
                error = failure
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> Any:
        raise _AddressRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_TRANSPORT_CLASSES: dict[str, type] = {}


def _transport_class(httpx_module: Any) -> type:
    """A PinnedTransport subclass of this httpx flavour's AsyncHTTPTransport (httpx and httpx2 share the shape)."""
    name = httpx_module.__name__
    if name not in _TRANSPORT_CLASSES:
        httpcore_module = __import__("httpcore2" if name == "httpx2" else "httpcore")

        class PinnedTransport(httpx_module.AsyncHTTPTransport):  # type: ignore[name-defined,misc]
            def __init__(self, policy: OutboundPolicy, *, verify: Any = True, limits: Any = None) -> None:
                # The parent's __init__ is skipped on purpose: it would build a pool without our backend.
                limits = limits or httpx_module.Limits(max_connections=100, max_keepalive_connections=20)
                self._policy = policy
                self._pool = httpcore_module.AsyncConnectionPool(
                    ssl_context=httpx_module.create_ssl_context(verify=verify, trust_env=False),
                    max_connections=limits.max_connections,
                    max_keepalive_connections=limits.max_keepalive_connections,
                    keepalive_expiry=limits.keepalive_expiry,
                    network_backend=_PinningBackend(policy, httpcore_module.AnyIOBackend()),
                )

            async def handle_async_request(self, request: Any) -> Any:
                url = str(request.url)
                self._policy.check_url(url, max_length=MAX_REQUEST_URL_LENGTH)
                try:
                    return await super().handle_async_request(request)
                except _AddressRefused as refused:
                    error = OutboundURLRefused(url, refused.reason)
                    # Logged here too: some SDKs (anthropic) wrap it into a bare "Connection error."
                    log.warning("outbound connection refused", url=error.url, reason=error.reason)
                    raise error from None

        PinnedTransport.__qualname__ = PinnedTransport.__name__ = f"PinnedTransport[{name}]"
        _TRANSPORT_CLASSES[name] = PinnedTransport
    return _TRANSPORT_CLASSES[name]


def _client(policy: OutboundPolicy, httpx_module: Any, kwargs: dict[str, Any]) -> Any:
    for forbidden in ("transport", "mounts", "proxy", "trust_env"):
        if forbidden in kwargs:
            raise TypeError(f"{forbidden}= would bypass the outbound policy")
    transport = _transport_class(httpx_module)(policy, verify=kwargs.pop("verify", True),
                                               limits=kwargs.pop("limits", None))
    kwargs.setdefault("follow_redirects", True)
    kwargs["max_redirects"] = min(kwargs.get("max_redirects", policy.max_redirects), policy.max_redirects)
    # trust_env=False: an HTTP(S)_PROXY from the environment would otherwise carry requests past the checks.
    return httpx_module.AsyncClient(transport=transport, trust_env=False, **kwargs)
