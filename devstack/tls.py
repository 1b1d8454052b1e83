"""The devstack's own certificate authority, and HTTP servers that speak TLS and plain HTTP on one port.

Two clients we drive unmodified insist on https: azure-identity refuses an ``http`` authority
(``normalize_authority``), and the Databricks provider fetches its OAuth token from
``https://{host}/oidc/v1/token`` whatever the connection's schema. So the Entra stand-in and the
workspaces answer TLS too, with certificates from a CA kept in the devstack's state. Clients
trust it through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` (see :func:`ca_bundle`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import logging
import socket
import ssl
from pathlib import Path

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
BUNDLE = "ca-bundle.pem"
DEFAULT_NAMES = ("127.0.0.1", "localhost")


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def ensure_ca(directory: Path) -> Path:
    """The CA certificate under ``directory`` (created once, with its key, on first use)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path
    # Processes starting together (compose services) must not each make a CA: one does, under a lock.
    with open(directory / ".ca.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            _create_ca(cert_path, key_path)
    return cert_path


def _create_ca(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack local CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    # The certificate last and whole (rename): its presence means the CA is complete.
    tmp = cert_path.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(cert_path)


def issue_server_cert(
    ca_dir: Path, out_dir: Path, names: list[str] | tuple[str, ...] = DEFAULT_NAMES
) -> tuple[Path, Path]:
    """A server certificate for ``names`` (host names or IPs) signed by the CA of ``ca_dir``.

    Reissued on every call: cheap, and a new name (a compose service) needs a new certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert_path = ensure_ca(ca_dir)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / "server.pem", out_dir / "server-key.pem"
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_cert_path.read_bytes())
    return cert_path, key_path


def ca_bundle(ca_dir: Path) -> Path:
    """certifi's roots plus the devstack CA: a ``REQUESTS_CA_BUNDLE`` that keeps public sites trusted."""
    import certifi

    ca = ensure_ca(ca_dir)
    bundle = ca_dir / BUNDLE
    bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca.read_bytes())
    return bundle


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifying context trusting ``ca_file`` (the default roots when None)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def maybe_wrap(sock, context: ssl.SSLContext | None, timeout: float = 10.0):
    """``sock`` wrapped in TLS when its client opens with a TLS handshake, else ``sock`` itself.

    Called in the request's own thread (``finish_request``), so a slow client blocks only itself.
    """
    if context is None:
        return sock
    sock.settimeout(timeout)
    try:
        first = sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return sock
    finally:
        sock.settimeout(None)
    if first == b"\x16":  # TLS record type 22: handshake
        return context.wrap_socket(sock, server_side=True)
    return sock


class OptionalTLSServerMixin:
    """For a socketserver with an ``ssl_context`` attribute: one port, both schemes. TLS when the
    client opens with a handshake, plain HTTP otherwise (see :func:`maybe_wrap`)."""

    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:
        try:
            request = maybe_wrap(request, self.ssl_context)
        except (ssl.SSLError, OSError) as exc:
            logging.getLogger(__name__).debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        super().finish_request(request, client_address)
