"""Throwaway PKI for TLS tests, made with the ``openssl`` command line: two CAs, and for each a server certificate
(``127.0.0.1`` / ``localhost``) and a client certificate (mTLS). EC P-256 keys, valid for two days."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    """Paths of one CA and the certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _leaf(d: Path, name: str, cn: str, usage: str, san: str | None) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={cn}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    ext = [f"extendedKeyUsage={usage}", "keyUsage=critical,digitalSignature,keyEncipherment",
           "basicConstraints=critical,CA:FALSE"]
    if san:
        ext.append(f"subjectAltName={san}")
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-sha256", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)


def make_pki(directory: Path, name: str = "ca") -> Pki:
    """A CA in ``directory/name`` with a server and a client certificate.

    Raises:
        RuntimeError: ``openssl`` is not installed (``./scripts/test.sh`` installs it).
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl not found: run ./scripts/test.sh, which installs it")
    d = directory / name
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN=otel-ml test {name}", "-keyout", "ca.key", "-out", "ca.crt",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    _leaf(d, "server", "localhost", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "client", f"{name}-client", "clientAuth", None)
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")
