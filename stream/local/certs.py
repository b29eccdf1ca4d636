"""A throw-away certificate authority and broker certificate for the local TLS broker.

Made with `cryptography` (no hand-written crypto, no openssl binary): an EC P-256 CA that
signs one server certificate for `127.0.0.1` and `localhost`, valid for a day. The broker
reads them as PEM files (`ssl.keystore.type=PEM`); clients trust `ca.pem`
(`ANONSTREAM_SSL_CAFILE`). For development and tests only: the keys are written
unencrypted, readable by their owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CERT_VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files `make_broker_certificates` writes."""

    ca_cert: Path  # the CA certificate clients trust
    broker_keystore: Path  # the broker's private key, then its certificate, then the CA's

    @property
    def directory(self) -> Path:
        return self.ca_cert.parent


def make_broker_certificates(
    directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), name: str = "local"
) -> TlsFiles:
    """Write `ca.pem` and `broker.pem` (key + chain) under `directory`; return their paths.

    `hosts` become the broker certificate's subject alternative names (IP addresses as
    such), which clients check against the address they connect to. `name` goes into both
    subjects, so that two authorities made for different tests are told apart in errors.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, name=name)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = _server_certificate(
        broker_key.public_key(), ca_key=ca_key, ca_cert=ca_cert, hosts=hosts, name=name
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(ca_cert=directory / "ca.pem", broker_keystore=directory / "broker.pem")
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    # Kafka's PEM key store: an unencrypted PKCS#8 key, then the certificate chain.
    key_pem = broker_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(
        files.broker_keystore, key_pem + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    )
    return files


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    """(not before, not after): from five minutes ago (clock skew) for `CERT_VALIDITY`."""
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + CERT_VALIDITY


def _ca_certificate(ca_key: Any, *, name: str) -> Any:
    """A self-signed CA certificate that may sign server certificates only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    not_before, not_after = _validity()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"anonstream {name} test CA")])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )


def _server_certificate(
    public_key: Any, *, ca_key: Any, ca_cert: Any, hosts: tuple[str, ...], name: str
) -> Any:
    """A TLS server certificate for `hosts`, signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    not_before, not_after = _validity()
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"anonstream {name} broker")])
        )
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new `path` (any old file replaced), readable by its owner only."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
