"""TLS and client authentication of the processor's endpoints (``tls:`` and ``auth:`` config sections).

* :func:`ssl_context`: the server ``SSLContext`` of the HTTP endpoints (OTLP/HTTP, Prometheus scrape): certificate,
  optional client CA (mTLS, ``CERT_REQUIRED``), minimum version, re-read of changed files every
  ``reload_interval``. Failed handshakes are counted by reason through ``on_failure`` (the context's SSL objects
  report them; asyncio itself only logs them in debug mode).
* :func:`grpc_credentials`: the same for the gRPC receiver (``grpc.dynamic_ssl_server_credentials``; grpc core does
  the handshake, so its failures are not visible to Python: the sender counts them, e.g. the collector's
  ``otelcol_exporter_send_failed_log_records``).
* :class:`Authenticator`: bearer tokens (``authorization: Bearer <token>``, as the collector's ``bearertokenauth``
  sends them) and basic auth; comparisons are constant-time (:func:`hmac.compare_digest` against every configured
  credential, no early exit). Token files hold one token per line and are re-read when they change.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from otel_ml.processor.config import AuthConfig, TlsConfig
from otel_ml.semconv.attributes import AuthFailureReason

_logger = logging.getLogger(__name__)
FILE_CHECK_INTERVAL_S: Final = 1.0
"""Token and password files are stat()ed at most this often."""
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CERT_REASONS = frozenset({
    "PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED", "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "NO_CERTIFICATE_RETURNED", "TLSV1_ALERT_DECRYPT_ERROR",
})

FailureSink = Callable[[str], None]
"""Called with an ``AuthFailureReason`` value for every failed handshake or authentication."""


def handshake_failure_reason(exc: ssl.SSLError) -> str:
    """``tls_certificate`` when a handshake failed on a certificate (either side's), else ``tls_handshake``."""
    reason = (getattr(exc, "reason", None) or "").upper()
    verify = getattr(exc, "verify_code", None)
    if reason in _CERT_REASONS or verify:
        return AuthFailureReason.TLS_CERTIFICATE
    return AuthFailureReason.TLS_HANDSHAKE


class _Files:
    """Modification times of a set of files, to re-read them when one changed."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = [p for p in paths if p]
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[float, ...]:
        out = []
        for p in self.paths:
            try:
                st = os.stat(p)
                out.append(st.st_mtime_ns + st.st_size + st.st_ino)
            except OSError:
                out.append(-1)
        return tuple(out)

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp != self.stamp:
            self.stamp = stamp
            return True
        return False


def ssl_context(tls: TlsConfig, on_failure: FailureSink) -> ssl.SSLContext:
    """Server context of an HTTP endpoint (see the module docstring).

    Raises:
        OSError: A file cannot be read (ssl.SSLError included: not a certificate or key, or they do not match).
    """
    class _CountingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                on_failure(handshake_failure_reason(exc))
                raise

    files = _Files([tls.cert_file, tls.key_file, tls.client_ca_file or ""])
    state = {"next": time.monotonic() + (tls.reload_interval or 0)}
    lock = threading.Lock()

    class _Context(ssl.SSLContext):
        def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
            if tls.reload_interval is not None and time.monotonic() >= state["next"]:
                with lock:
                    if time.monotonic() >= state["next"]:
                        state["next"] = time.monotonic() + tls.reload_interval
                        if files.changed():
                            _reload(self)
            return super().wrap_bio(*args, **kwargs)

    def _reload(ctx: ssl.SSLContext) -> None:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.client_ca_file:
                ctx.load_verify_locations(tls.client_ca_file)
            _logger.info("TLS certificate files re-read (%s)", tls.cert_file)
        except (OSError, ValueError) as exc:
            _logger.error("TLS certificate files changed but cannot be loaded (keeping the previous ones): %s", exc)

    ctx = _Context(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    _load_files(ctx, tls, "cannot load the TLS certificate, key or client CA")
    if tls.client_ca_file:
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.sslobject_class = _CountingSSLObject
    return ctx


def check_tls_files(tls: TlsConfig, key: str) -> None:
    """Load the files of ``tls`` once to fail at start with a clear message (not a PEM file, key not matching).

    Raises:
        OSError: Naming ``key`` and the problem.
    """
    _load_files(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls, f"{key}: cannot load the certificate, key or client CA")


def _load_files(ctx: ssl.SSLContext, tls: TlsConfig, what: str) -> None:
    """Load the certificate chain and the client CA of ``tls`` into ``ctx``; OSError ``what (files): reason``."""
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
    except (OSError, ValueError) as exc:
        raise OSError(f"{what} ({tls.cert_file}, {tls.key_file}, {tls.client_ca_file}): {exc}") from exc


def grpc_credentials(tls: TlsConfig) -> Any:
    """``grpc.ServerCredentials`` of the gRPC receiver (certificate files re-read every ``reload_interval``).

    Raises:
        OSError: A file cannot be read.
    """
    import grpc

    def config() -> Any:
        ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
        return grpc.ssl_server_certificate_configuration(
            [(Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())], root_certificates=ca)

    initial = config()
    files = _Files([tls.cert_file, tls.key_file, tls.client_ca_file or ""])
    state = {"next": time.monotonic() + (tls.reload_interval or 0)}
    lock = threading.Lock()

    def fetch() -> Any:  # called by grpc before every new connection's handshake
        if tls.reload_interval is None or time.monotonic() < state["next"]:
            return None
        with lock:
            state["next"] = time.monotonic() + tls.reload_interval
            if not files.changed():
                return None
            try:
                new = config()
            except OSError as exc:
                _logger.error("gRPC TLS files changed but cannot be read (keeping the previous ones): %s", exc)
                return None
            _logger.info("gRPC TLS certificate files re-read (%s)", tls.cert_file)
            return new

    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=bool(tls.client_ca_file))


def _lines(path: str) -> list[bytes]:
    return [ln.strip().encode() for ln in Path(path).read_text().splitlines() if ln.strip()]


class Authenticator:
    """Checks the ``authorization`` value of a request against the configured bearer tokens or basic credentials.

    Thread-safe. :meth:`check` returns None when the request is authenticated, else the ``AuthFailureReason``.
    """

    def __init__(self, auth: AuthConfig) -> None:
        self._auth = auth
        self._lock = threading.Lock()
        self._next_check = 0.0
        self.scheme = "Basic" if auth.basic is not None else "Bearer"
        path = auth.bearer_token_file or (auth.basic.password_file if auth.basic is not None else None)
        self._files = _Files([path]) if path else None
        self._valid = self._load()

    def _load(self) -> list[bytes]:
        a = self._auth
        if a.bearer_token is not None:
            return [a.bearer_token.encode()]
        if a.bearer_token_file is not None:
            tokens = _lines(a.bearer_token_file)
            if not tokens:
                _logger.error("bearer_token_file %s holds no token: every request is refused", a.bearer_token_file)
            return tokens
        assert a.basic is not None
        passwords = [a.basic.password.encode()] if a.basic.password is not None else \
            _lines(a.basic.password_file or "")[:1]
        return [base64.b64encode(a.basic.username.encode() + b":" + p) for p in passwords]

    def _current(self) -> list[bytes]:
        if self._files is None:
            return self._valid
        now = time.monotonic()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    self._next_check = now + FILE_CHECK_INTERVAL_S
                    if self._files.changed():
                        try:
                            self._valid = self._load()
                            _logger.info("credentials file re-read")
                        except OSError as exc:
                            _logger.error("credentials file changed but cannot be read (keeping the previous "
                                          "credentials): %s", exc)
        return self._valid

    def check(self, authorization: str | bytes | None) -> str | None:
        """None if ``authorization`` (the header value, e.g. ``Bearer abc``) is valid, else the failure reason."""
        if authorization is None:
            return AuthFailureReason.MISSING_CREDENTIALS
        value = authorization.encode("latin-1", "replace") if isinstance(authorization, str) else authorization
        scheme, _, credential = value.strip().partition(b" ")
        if scheme.lower() != self.scheme.lower().encode() or not credential.strip():
            return AuthFailureReason.MISSING_CREDENTIALS
        credential = credential.strip()
        ok = False
        for valid in self._current():
            ok |= hmac.compare_digest(credential, valid)
        return None if ok else AuthFailureReason.INVALID_CREDENTIALS
