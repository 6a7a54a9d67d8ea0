"""Certificates for devbox's local CA, built in memory: no files, no sockets, no clocks
it is not given (``now`` is a parameter).

The CA signs one leaf per host name a client asks for (SNI), for the HTTPS mocks and
the recording proxy's interception. Every leaf shares one EC P-256 key pair
(``LeafKey``): generating a key is the expensive step, signing a certificate with an EC
key is well under a millisecond or two, so a new host costs one signature (see
``bench/tls/bench_certs.py``). mitmproxy does the same for the same reason.

Files (the CA's key at 0600 in the user's data directory, the PEM a ``ssl.SSLContext``
has to load) are ``devbox.wire.ca``'s business.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "devbox local CA"
CA_DAYS = 3650
# browsers and macOS refuse server certificates valid for longer than 398 days
LEAF_DAYS = 397
# a client's clock a little behind ours must not see a certificate from the future
BACKDATE = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Authority:
    """The CA: its certificate and private key (``cryptography`` objects)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def fingerprint(self) -> str:
        """SHA-256 of the certificate, as ``openssl x509 -fingerprint -sha256`` prints it."""
        digest = self.cert.fingerprint(hashes.SHA256())
        return ":".join(f"{b:02X}" for b in digest)


def new_authority(now: dt.datetime, *, common_name: str = CA_NAME) -> Authority:
    """A fresh CA (key and self-signed certificate), valid for ten years from ``now``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devbox"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def load_authority(cert_pem: bytes, key_pem: bytes) -> Authority:
    """The CA from its PEM files' contents; ``ValueError`` if they do not belong together."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or (
        pub.public_numbers() != key.public_key().public_numbers()
    ):
        raise ValueError("the CA certificate and key do not belong together")
    return Authority(cert, key)


@dataclass(frozen=True, slots=True)
class LeafKey:
    """The one key pair every leaf certificate of a process shares."""

    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> LeafKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def san_for(host: str) -> x509.GeneralName:
    """An IP address SAN for an address (``127.0.0.1``, ``::1``), else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def leaf_certificate(
    ca: Authority, leaf: LeafKey, hosts: tuple[str, ...], now: dt.datetime
) -> x509.Certificate:
    """A server certificate for ``hosts`` (the first is the subject), signed by ``ca``."""
    if not hosts:
        raise ValueError("a leaf certificate needs at least one host")
    seen: list[str] = []
    for h in hosts:
        if h and h not in seen:
            seen.append(h)
    cn = seen[0][:64]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(leaf.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName([san_for(h) for h in seen]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )


def chain_pem(cert: x509.Certificate, ca: Authority) -> bytes:
    """The leaf followed by the CA: what a server sends."""
    return cert.public_bytes(serialization.Encoding.PEM) + ca.cert_pem


# the names a mock's or a reverse proxy's certificate always carries: the service reaches
# it as localhost or by address
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
