"""The SSRF guard against DNS rebinding, with a resolver the test controls and real
loopback servers: the guard resolves a name once, checks it, and connects to the address
it checked (Host header, TLS SNI and certificate hostname kept), for image downloads and
for signed deliveries. No test sends traffic off loopback: the "public-looking" answers
below are refused or never connected to, and every refusal happens before a connect."""
from __future__ import annotations

import datetime as dt
import io
import ipaddress
import ssl
from collections.abc import Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from tests.support.recorder import Recorder
from worker.delivery import deliver_due, enqueue, get_delivery
from worker.errors import UnsafeURL
from worker.keys import Keys
from worker.settings import load_settings
from worker.storage.download import download_image
from worker.storage.ssrf import check_url, guarded_get, parse_networks

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
GOOD = "127.0.0.1"        # the address the name resolves to when it is checked
INTERNAL = "127.0.0.2"    # what it resolves to a moment later (the rebinding)
#: The good host is exempted from the private-address refusal, the internal one is not:
#: the same policy a deployment gets from MJFLOW_ALLOWED_PRIVATE_NETWORKS.
EXEMPT = parse_networks([f"{GOOD}/32"])


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


class Rebinding:
    """A resolver whose first answer is ``first`` and every later one ``then``."""

    def __init__(self, first: list[str], then: list[str]) -> None:
        self.answers = [first, then]
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        answer = self.answers[min(len(self.calls), 1)]
        self.calls.append(host)
        return [ipaddress.ip_address(a) for a in answer]


@pytest.fixture
def pair() -> Iterator[tuple[Recorder, Recorder]]:
    """A legitimate server and an internal one on the same port, different loopbacks."""
    good = Recorder(GOOD, body=png(), headers={"Content-Type": "image/png"})
    internal = Recorder(INTERNAL, port=good.port, body=b"internal secrets", close=True)
    yield good, internal
    good.stop()
    internal.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


def test_download_connects_to_the_checked_address_not_a_rebound_one(pair, session) -> None:
    good, internal = pair
    resolver = Rebinding([GOOD], [INTERNAL])
    url = f"http://images.rebind.test:{good.port}/x.png"
    with download_image(session, url, max_bytes=1 << 20, timeout_s=5, allowed_networks=EXEMPT,
                        resolver=resolver) as image:
        assert image.format == "PNG" and image.width == 8
    assert resolver.calls == ["images.rebind.test"]          # resolved once, then pinned
    assert [s.headers["Host"] for s in good.seen] == [f"images.rebind.test:{good.port}"]
    assert internal.seen == []


def test_a_redirect_hop_that_resolves_inside_is_refused_before_connecting(pair, session) -> None:
    good, internal = pair
    good.status, good.headers = 302, {"Location": f"http://next.rebind.test:{good.port}/x"}
    resolver = Rebinding([GOOD], ["93.184.216.34", INTERNAL])   # never connected to
    with pytest.raises(UnsafeURL, match="refused by policy") as caught:
        guarded_get(session, f"http://first.rebind.test:{good.port}/", timeout_s=5,
                    allowed_networks=EXEMPT, resolver=resolver)
    assert INTERNAL not in str(caught.value)           # the name's addresses are not told
    assert len(good.seen) == 1 and internal.seen == []


def test_refusal_comes_before_any_connect(pair, session) -> None:
    good, internal = pair
    resolver = Rebinding(["93.184.216.34", INTERNAL], [GOOD])
    with pytest.raises(UnsafeURL, match="refused by policy"):
        download_image(session, f"http://mixed.rebind.test:{good.port}/x.png", max_bytes=1 << 20,
                       timeout_s=5, allowed_networks=EXEMPT, resolver=resolver)
    assert good.seen == [] and internal.seen == []


# -- signed deliveries ----------------------------------------------------------------------
def _delivery(rds, prefix: str, url: str, resolver: Rebinding, **settings_: object) -> dict:
    keys = Keys(prefix)
    settings = load_settings(webhook_secret=SECRET, delivery_timeout_s=2.0, **settings_)
    did = enqueue(rds, keys, job_id="job_1", url=url, event={"type": "job.succeeded",
                                                              "data": {"id": "job_1"}})
    with requests.Session() as s:
        s.trust_env = False
        deliver_due(rds, keys, settings=settings, session=s, resolver=resolver, concurrency=1)
    view = get_delivery(rds, keys, did)
    assert view is not None
    return view


def test_delivery_is_pinned_to_the_checked_address(rds, prefix, pair) -> None:
    good, internal = pair
    good.body, good.headers = b"", {}
    resolver = Rebinding([GOOD], [INTERNAL])
    view = _delivery(rds, prefix, f"http://hooks.rebind.test:{good.port}/in", resolver,
                     allowed_private_networks=[f"{GOOD}/32"])
    assert view["state"] == "delivered"
    assert [s.headers["Host"] for s in good.seen] == [f"hooks.rebind.test:{good.port}"]
    assert good.seen[0].headers["webhook-signature"].startswith("v1,")
    assert internal.seen == [] and resolver.calls == ["hooks.rebind.test"]


def test_delivery_to_a_name_inside_fails_without_telling_the_address(rds, prefix, pair) -> None:
    _good, internal = pair                      # internal answers 200 with Connection: close
    resolver = Rebinding([INTERNAL], [INTERNAL])
    view = _delivery(rds, prefix, f"http://intranet.rebind.test:{internal.port}/in", resolver)
    assert view["state"] == "failed", view
    assert "refused by policy" in view["reason"]
    assert INTERNAL not in view["reason"] and "loopback" not in view["reason"]
    assert internal.seen == []


# -- TLS: SNI and the certificate are checked against the name, not the pinned address --------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secure.rebind.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("secure.rebind.test")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_https_keeps_sni_and_certificate_hostname(tls_files, session) -> None:
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = Recorder(GOOD, tls=context)
    session.verify = cert
    try:
        resolver = Rebinding([GOOD], [INTERNAL])
        with guarded_get(session, f"https://secure.rebind.test:{server.port}/", timeout_s=5,
                         allowed_networks=EXEMPT, resolver=resolver) as answer:
            assert answer.status_code == 200
        assert server.sni == ["secure.rebind.test"]
        other = Rebinding([GOOD], [GOOD])          # a name the certificate does not cover
        with pytest.raises(requests.exceptions.SSLError):
            guarded_get(session, f"https://other.rebind.test:{server.port}/", timeout_s=5,
                        allowed_networks=EXEMPT, resolver=other)
    finally:
        server.stop()


# -- address forms ----------------------------------------------------------------------------
@pytest.mark.parametrize("host", [
    "[2002:7f00:1::]",            # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::]",         # 6to4 of 169.254.169.254
    "[2002:a00:1::]",             # 6to4 of 10.0.0.1
    "[64:ff9b::7f00:1]",          # NAT64 of 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",       # NAT64 of 169.254.169.254
    "168.63.129.16",              # Azure WireServer
    "169.254.170.23",             # EKS Pod Identity
    "[fd00:ec2::23]",             # EKS Pod Identity over IPv6
])
def test_embedded_and_cloud_credential_addresses_are_refused(host: str) -> None:
    with pytest.raises(UnsafeURL, match="refused by policy"):
        check_url(f"http://{host}/x")


@pytest.mark.parametrize("host", ["[2002:a9fe:a9fe::]", "[64:ff9b::a9fe:a9fe]", "168.63.129.16",
                                  "169.254.170.23", "[fd00:ec2::23]"])
def test_credential_addresses_stay_refused_when_private_is_allowed(host: str) -> None:
    with pytest.raises(UnsafeURL, match="metadata"):
        check_url(f"http://{host}/x", allow_private=True)


def test_public_6to4_passes() -> None:
    check_url("http://[2002:5db8:d822::]/x")          # 6to4 of 93.184.216.34 (never connected)


def test_allowed_hosts_compare_the_port() -> None:
    check_url("http://127.0.0.1:8080/x", allowed_hosts=["127.0.0.1:8080"], allow_private=True)
    with pytest.raises(UnsafeURL, match="not in the allowed hosts"):
        check_url("http://127.0.0.1:8081/x", allowed_hosts=["127.0.0.1:8080"], allow_private=True)
    with pytest.raises(UnsafeURL, match="not in the allowed hosts"):
        check_url("https://cdn.discordapp.com:8443/x", allowed_hosts=["cdn.discordapp.com"])
    check_url("https://[2002:5db8:d822::]:8443/x", allowed_hosts=["[2002:5db8:d822::]:8443"])
    with pytest.raises(UnsafeURL, match="whitespace"):
        check_url("http://a b/c")
