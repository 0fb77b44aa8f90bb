"""The outbound URL policy: hostile URLs are refused with a clear reason; allowed ones connect to the address
that was checked (pinned), and every redirect hop is checked again. Real HTTP servers on loopback addresses."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from tests.fakes.http_server import LocalHTTPServer, Reply
from voxfleet.api.outbound import MAX_URL_LENGTH, OutboundPolicy, OutboundURLRefused
from voxfleet.api.settings import PlatformSettings

STRICT = OutboundPolicy()  # what a cluster without exceptions enforces

HOSTILE = [
    # (url, words the reason must contain)
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://2130706433/", "loopback"),  # decimal
    ("http://0x7f.1/", "loopback"),  # hex, short form
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),  # octal
    ("http://017700000001/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),  # IPv4-mapped
    ("http://[::ffff:7f00:1]/", "127.0.0.1"),
    ("http://[::127.0.0.1]/", "127.0.0.1"),  # IPv4-compatible
    ("http://[64:ff9b::10.0.0.1]/", "10.0.0.1"),  # NAT64
    ("http://[64:ff9b:1::1]/", "NAT64"),
    ("http://[2002:a9fe:a9fe::1]/", "metadata"),  # 6to4 of 169.254.169.254
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1:8080/x", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://169.254.1.1/", "link-local"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://METADATA.GOOGLE.INTERNAL./", "metadata"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "private"),  # reserved 240/4 (Python counts it private)
    ("http://255.255.255.255/", "private"),
    ("ftp://example.com/file", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com/", "scheme"),
    ("//example.com/", "scheme"),
    ("http://user:hunter2@example.com/", "credentials"),
    ("http://@example.com/", "credentials"),
    ("http:///path", "no host"),
    ("http://example.com:99999/", "does not parse"),
    ("http://exa mple.com/", "whitespace"),
    ("http://example.com\\@10.0.0.1/", "backslash"),
    ("http://example.com/" + "a" * MAX_URL_LENGTH, "longer than"),
]


@pytest.mark.parametrize(("url", "reason"), HOSTILE)
def test_hostile_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(OutboundURLRefused) as refused:
        STRICT.check_url(url)
    assert reason.lower() in refused.value.reason.lower(), refused.value.reason
    assert str(refused.value).startswith("outbound URL ")


@pytest.mark.parametrize("url", ["https://api.example.com/v1/tools?x=1", "http://8.8.8.8:8080/",
                                 "https://[2606:4700:4700::1111]/", "http://[64:ff9b::8.8.8.8]/",
                                 "http://cafe.be/", "https://xn--mnchen-3ya.de/"])
def test_public_urls_pass_the_syntax_checks(url: str) -> None:
    target = STRICT.check_url(url)
    assert target.port in (80, 443, 8080)


def test_errors_never_show_credentials_or_query_strings() -> None:
    with pytest.raises(OutboundURLRefused) as refused:
        STRICT.check_url("http://admin:s3cr3t-pw@10.0.0.1/path?api_key=SECRET-QUERY#frag")
    message = str(refused.value)
    assert "s3cr3t-pw" not in message and "SECRET-QUERY" not in message and "admin" not in message
    assert "http://10.0.0.1/path" in message


def test_allowed_cidrs_open_exactly_the_chosen_networks() -> None:
    policy = OutboundPolicy.from_settings(PlatformSettings(outbound_allowed_cidrs=["127.0.0.1/32"]))
    assert policy.check_url("http://127.0.0.1:8080/tool").address is not None
    assert policy.check_url("http://[::ffff:127.0.0.1]:8080/").address is not None
    for url in ("http://127.0.0.2/", "http://[::1]/", "http://10.0.0.1/"):
        with pytest.raises(OutboundURLRefused):
            policy.check_url(url)
    # Metadata stays refused even when a platform allows its whole network.
    with pytest.raises(OutboundURLRefused, match="metadata"):
        OutboundPolicy(["169.254.0.0/16"]).check_url("http://169.254.169.254/")


async def test_names_are_checked_by_every_address_they_resolve_to() -> None:
    answers = {"rebind.example": ["93.184.216.34", "10.0.0.7"], "public.example": ["93.184.216.34"],
               "mapped.example": ["::ffff:192.168.0.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    policy = OutboundPolicy(resolver=resolver)
    target, addresses = await policy.check("https://public.example/x")
    assert addresses == ["93.184.216.34"] and target.host == "public.example"
    with pytest.raises(OutboundURLRefused, match="rebind.example resolves to a refused address .*10.0.0.7"):
        await policy.check("https://rebind.example/x")
    with pytest.raises(OutboundURLRefused, match="192.168.0.1"):
        await policy.check("https://mapped.example/x")


async def test_localhost_through_the_system_resolver_is_refused() -> None:
    with pytest.raises(OutboundURLRefused, match="localhost resolves to a refused address .*loopback"):
        await STRICT.check("http://localhost:9/")
    with pytest.raises(OutboundURLRefused, match="does not resolve"):
        await STRICT.check("http://no-such-host.invalid/")


@pytest.fixture(scope="module")
def servers():
    """A tool-like server on 127.0.0.1 (allowed in tests) and a victim on 127.0.0.2 (not allowed)."""
    victim = LocalHTTPServer(lambda request: Reply(200, "internal secrets"), host="127.0.0.2").start()

    def tool(request):
        redirects = {
            "/to-victim": f"{victim.url}/admin",
            "/to-metadata": "http://169.254.169.254/latest/meta-data/",
            "/to-decimal-loopback": f"http://2130706434:{victim.port}/",  # 127.0.0.2 spelt as a number
            "/to-self": "/ok",
            "/loop": "/loop",
        }
        if request.path in redirects:
            return Reply(302, b"", {"Location": redirects[request.path]})
        return Reply(200, {"host": request.headers.get("host"), "path": request.path})

    server = LocalHTTPServer(tool).start()
    yield server, victim
    server.stop()
    victim.stop()


ALLOW_LOOPBACK_ONE = OutboundPolicy(["127.0.0.1/32"])


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
async def test_redirects_to_refused_addresses_are_not_followed(servers, flavour: str) -> None:
    server, victim = servers
    make = ALLOW_LOOPBACK_ONE.httpx_client if flavour == "httpx" else ALLOW_LOOPBACK_ONE.httpx2_client
    loops_before = len(server.calls("/loop"))
    async with make(timeout=5) as client:
        ok = await client.get(f"{server.url}/to-self")
        assert ok.status_code == 200 and ok.json()["path"] == "/ok"
        for path, reason in (("/to-victim", "127.0.0.2 is a loopback address"),
                             ("/to-decimal-loopback", "127.0.0.2 is a loopback address"),
                             ("/to-metadata", "metadata")):
            with pytest.raises(OutboundURLRefused, match=reason):
                await client.get(f"{server.url}{path}")
        too_many = httpx.TooManyRedirects if flavour == "httpx" else httpx2.TooManyRedirects
        with pytest.raises(too_many):
            await client.get(f"{server.url}/loop")
    assert victim.calls() == [], "the refused address was reached"
    assert len(server.calls("/loop")) - loops_before == ALLOW_LOOPBACK_ONE.max_redirects + 1


async def test_connections_go_to_the_checked_address_and_keep_the_host_name(servers) -> None:
    server, _ = servers
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if host == "tool.test" else ["10.9.9.9"]

    policy = OutboundPolicy(["127.0.0.1/32"], resolver=resolver)
    async with policy.httpx_client(timeout=5) as client:
        # tool.test exists only in our resolver: reaching the server proves the checked address was used.
        reply = await client.get(f"http://tool.test:{server.port}/pinned")
        assert reply.json() == {"host": f"tool.test:{server.port}", "path": "/pinned"}
        with pytest.raises(OutboundURLRefused, match="other.test resolves to a refused address .*10.9.9.9"):
            await client.get(f"http://other.test:{server.port}/")
    assert lookups == ["tool.test", "other.test"]


async def test_environment_proxies_cannot_carry_requests_past_the_checks(servers, monkeypatch) -> None:
    server, _ = servers
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.0.0.1:3128")
    async with ALLOW_LOOPBACK_ONE.httpx_client(timeout=5) as client:
        assert (await client.get(f"{server.url}/direct")).status_code == 200
    with pytest.raises(TypeError, match="bypass"):
        ALLOW_LOOPBACK_ONE.httpx_client(transport=httpx.AsyncHTTPTransport())


async def test_websocket_arguments_pin_the_checked_address() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"tts.example": ["93.184.216.34"], "evil.example": ["169.254.169.254"]}[host]

    policy = OutboundPolicy(resolver=resolver)
    assert await policy.websocket_connect_kwargs("wss://tts.example/tts/websocket") == {
        "host": "93.184.216.34", "port": 443, "proxy": None, "server_hostname": "tts.example"}
    assert (await policy.websocket_connect_kwargs("ws://tts.example:8080/x"))["port"] == 8080
    with pytest.raises(OutboundURLRefused, match="metadata"):
        await policy.websocket_connect_kwargs("wss://evil.example/")


def _self_signed(host: str, tmp_path) -> tuple[str, str]:
    """A certificate for `host` only (and the key), written to files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


async def test_tls_is_verified_against_the_host_name_while_the_address_is_pinned(tmp_path) -> None:
    import ssl

    cert_file, key_file = _self_signed("tool.test", tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    trust = ssl.create_default_context(cafile=cert_file)

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = OutboundPolicy(["127.0.0.1/32"], resolver=resolver)
    with LocalHTTPServer(lambda request: Reply(200, {"host": request.headers["host"]}), ssl_context=server_tls) as tls:
        async with policy.httpx_client(verify=trust, timeout=5) as client:
            reply = await client.get(f"https://tool.test:{tls.port}/")
            assert reply.json() == {"host": f"tool.test:{tls.port}"}
            # Same address, another name: the certificate does not match, so TLS refuses.
            with pytest.raises(httpx.ConnectError, match="certificate|hostname"):
                await client.get(f"https://other.test:{tls.port}/")
