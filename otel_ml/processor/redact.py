"""Secrets out of logs: credentials in URLs (user info, token query parameters) and ``authorization`` values.

:func:`redact` rewrites any text; :class:`RedactingFormatter` applies it to every formatted log line of the
process (messages, arguments and tracebacks, from otel-ml and from the libraries it uses: the OTLP exporters log
their endpoint on every failed export). The CLI installs it on the root logger's handlers.

Examples:
    >>> redact("exporting to https://alice:s3cret@collector:4317/v1/metrics?token=abc&x=1")
    'exporting to https://alice:***@collector:4317/v1/metrics?token=***&x=1'
    >>> redact("target user:pw@collector:4317")
    'target user:***@collector:4317'
    >>> redact("authorization: Bearer abc.def")
    'authorization: Bearer ***'
"""

from __future__ import annotations

import logging
import re
from typing import Final

SECRET_QUERY_PARAMS: Final = (
    "token", "access_token", "id_token", "refresh_token", "api_key", "apikey", "api-key", "key", "password", "passwd",
    "pwd", "secret", "client_secret", "sig", "signature", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "auth", "authorization", "credential", "credentials", "private_token",
)
"""Query parameters whose values are redacted (case-insensitive)."""
MASK: Final = "***"

# scheme://user:password@  or  scheme://token@
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/@:?#]*)(?::(?P<pw>[^\s/@?#]*))?@")
# host-style targets without a scheme (what the gRPC exporter logs): user:password@host
_BARE = re.compile(r"(?<![\w/:.@-])(?P<user>[\w.%+-]+):(?P<pw>[^\s/@:]+)@(?=[\w.\[\]-]+(?::\d+)?\b)")
_QUERY = re.compile(r"(?P<key>[?&;](?:" + "|".join(re.escape(k) for k in SECRET_QUERY_PARAMS) +
                    r"))=(?P<value>[^&#\s'\"]*)", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?P<key>\b(?:authorization|proxy-authorization)\b['\"]?\s*[:=,]\s*['\"]?"
                          r"(?:(?:Bearer|Basic|Token)\s+)?)(?P<value>[^\s'\",)]+)", re.IGNORECASE)


def _userinfo(match: re.Match[str]) -> str:
    if match.group("pw") is None:  # a lone user info part is a token (https://TOKEN@host)
        return f"{match.group('scheme')}{MASK}@"
    return f"{match.group('scheme')}{match.group('user')}:{MASK}@"


def redact(text: str) -> str:
    """``text`` with URL credentials, secret query parameters and authorization values masked."""
    if "@" in text:
        text = _USERINFO.sub(_userinfo, text)
        text = _BARE.sub(lambda mt: f"{mt.group('user')}:{MASK}@", text)
    if "=" in text:
        text = _QUERY.sub(lambda mt: f"{mt.group('key')}={MASK}", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(lambda mt: f"{mt.group('key')}{MASK}", text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, arguments, traceback) went through :func:`redact`."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record))


def install(logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of every handler of ``logger`` (default: the root logger) in a :class:`RedactingFormatter`."""
    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))
