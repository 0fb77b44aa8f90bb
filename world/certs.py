"""The test world's PKI: one cluster CA, the apiserver's serving cert, client certs per component, the
service-account key pair, and a separate front-proxy CA for the requestheader flags.

Everything is generated fresh per world (a second or so with EC keys) and written as PEM files into one folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)

# Client identities: (file stem, common name = user, organisations = groups).
CLIENTS: list[tuple[str, str, list[str]]] = [
    ("admin", "voxfleet-admin", ["system:masters"]),
    ("controller-manager", "system:kube-controller-manager", []),
    ("scheduler", "system:kube-scheduler", []),
    # The pod runner plays kubelet for several nodes in one process; a node identity (system:node:<name>) covers
    # one node only, so it acts as a cluster admin. kwok does the same with the admin kubeconfig.
    ("pod-runner", "voxfleet:pod-runner", ["system:masters"]),
    ("kwok", "voxfleet:kwok", ["system:masters"]),
    # The apiserver's own client identity towards aggregated APIs (front-proxy) is signed by the front-proxy CA.
]


@dataclass(frozen=True)
class Pki:
    """Paths of everything the control plane needs; all PEM."""
    dir: Path

    @property
    def ca_cert(self) -> Path: return self.dir / "ca.crt"
    @property
    def ca_key(self) -> Path: return self.dir / "ca.key"
    @property
    def apiserver_cert(self) -> Path: return self.dir / "apiserver.crt"
    @property
    def apiserver_key(self) -> Path: return self.dir / "apiserver.key"
    @property
    def sa_key(self) -> Path: return self.dir / "sa.key"
    @property
    def sa_pub(self) -> Path: return self.dir / "sa.pub"
    @property
    def front_proxy_ca_cert(self) -> Path: return self.dir / "front-proxy-ca.crt"
    @property
    def front_proxy_client_cert(self) -> Path: return self.dir / "front-proxy-client.crt"
    @property
    def front_proxy_client_key(self) -> Path: return self.dir / "front-proxy-client.key"

    def client_cert(self, who: str) -> Path: return self.dir / f"{who}.crt"
    def client_key(self, who: str) -> Path: return self.dir / f"{who}.key"


def generate(directory: Path) -> Pki:
    """Write a complete PKI into ``directory`` and return its paths."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)

    ca_key = _ec_key()
    ca_cert = _ca_cert(ca_key, "voxfleet-world-ca")
    _write(pki.ca_cert, ca_cert, pki.ca_key, ca_key)

    serving_key = _ec_key()
    sans = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                      "kubernetes.default.svc.cluster.local")]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "10.96.0.1")]
    serving = _leaf(serving_key, "kube-apiserver", [], ca_cert, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    _write(pki.apiserver_cert, serving, pki.apiserver_key, serving_key)

    for stem, user, groups in CLIENTS:
        key = _ec_key()
        cert = _leaf(key, user, groups, ca_cert, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(pki.client_cert(stem), cert, pki.client_key(stem), key)

    # requestheader: the apiserver trusts X-Remote-User only from a client cert of this CA named front-proxy-client.
    fp_ca_key = _ec_key()
    fp_ca = _ca_cert(fp_ca_key, "voxfleet-world-front-proxy-ca")
    _write(pki.front_proxy_ca_cert, fp_ca, directory / "front-proxy-ca.key", fp_ca_key)
    fp_key = _ec_key()
    fp_cert = _leaf(fp_key, "front-proxy-client", [], fp_ca, fp_ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(pki.front_proxy_client_cert, fp_cert, pki.front_proxy_client_key, fp_key)

    # Service-account tokens: RSA, because every JWT consumer accepts RS256.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.sa_key.write_bytes(_key_pem(sa_key))
    pki.sa_pub.write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    for key_file in directory.glob("*.key"):
        key_file.chmod(0o600)
    return pki


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, groups: list[str] | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups or []]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between processes
            .not_valid_after(now + VALIDITY))


def _ca_cert(key, common_name: str) -> x509.Certificate:
    name = _name(common_name)
    return (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def _leaf(key, common_name: str, groups: list[str], ca_cert: x509.Certificate, ca_key, usage,
          sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    builder = (_builder(_name(common_name, groups), ca_cert.subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(cert_path: Path, cert: x509.Certificate, key_path: Path, key) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
