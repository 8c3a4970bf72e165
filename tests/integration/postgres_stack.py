"""Scale-out on a shared PostgreSQL join store: processor replicas configured for it, and a tiny DNS server.

The collector's ``otlp_grpc`` exporter balances round robin over every address a DNS name resolves to (gRPC's
``dns`` resolver, ``balancer_name: round_robin``), as it would over a Kubernetes headless Service. Here the name
is answered by :class:`DnsServer` (a UDP server in this process, the ``dns://<authority>/`` of the gRPC target),
and the replicas listen on the same port of different loopback addresses (127.0.0.1, 127.0.0.2, ...).
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import yaml

from tests.integration.collector_stack import SCALEOUT_ROUNDROBIN, Processor, start_and_wait
from tests.support.postgres import PG_PASSWORD, PG_PASSWORD_ENV, PostgresServer
from tests.support.procs import tcp_open

REPLICAS_NAME = "otel-ml-processor.replicas.test"
ROUND_ROBIN_OVERLAY = SCALEOUT_ROUNDROBIN


def postgres_store(server: PostgresServer, schema: str, **extra: Any) -> dict[str, Any]:
    """The ``store:`` section of a replica on ``server``; the password comes from the environment."""
    dsn = server.dsn(password=None).replace("otelml@", "otelml:${env:" + PG_PASSWORD_ENV + "}@", 1)
    return {"backend": "postgres", "dsn": dsn, "schema": schema, **extra}


def use_postgres(processor: Processor, host: str | None = None) -> Processor:
    """Give a replica the password's environment variable (and, with ``host``, its own loopback address)."""
    processor.process.env[PG_PASSWORD_ENV] = PG_PASSWORD
    if host is not None:
        processor.host = host  # type: ignore[attr-defined]
        config = yaml.safe_load(processor.config_path.read_text())
        config["receiver"]["grpc"]["endpoint"] = f"{host}:{processor.port}"
        processor.config_path.write_text(yaml.safe_dump(config))
    return processor


class HostProcessor(Processor):
    """A replica on its own loopback address (readiness checked there)."""

    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> HostProcessor:
        start_and_wait(self.process, lambda: tcp_open(self.port, self.host), timeout)
        return self


class DnsServer:
    """Answers A queries for ``name`` with ``addresses`` (NOERROR and no record for other types of it, NXDOMAIN for
    other names). Enough for Go's resolver as gRPC's ``dns`` resolver uses it."""

    def __init__(self, name: str, addresses: list[str]) -> None:
        self.name = name.rstrip(".").lower()
        self.addresses = list(addresses)
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    def target(self, port: int) -> str:
        """The gRPC target that resolves ``name`` through this server."""
        return f"dns://{self.authority}/{self.name}:{port}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), peer)
            except (OSError, ValueError, IndexError, struct.error):
                continue

    def _answer(self, query: bytes) -> bytes:
        qid, _flags, _count = struct.unpack(">HHH", query[:6])
        pos, labels = 12, []
        while query[pos]:
            n = query[pos]
            labels.append(query[pos + 1:pos + 1 + n].decode("ascii").lower())
            pos += 1 + n
        pos += 1
        qtype, _qclass = struct.unpack(">HH", query[pos:pos + 4])
        question = query[12:pos + 4]
        self.queries += 1
        if ".".join(labels) != self.name:
            return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        answers = b""
        count = 0
        if qtype == 1:  # A
            for addr in self.addresses:
                answers += struct.pack(">HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(addr)
                count += 1
        return struct.pack(">HHHHHH", qid, 0x8180, 1, count, 0, 0) + question + answers

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()
