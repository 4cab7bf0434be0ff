"""A local APNs: HTTP/2 over TLS on 127.0.0.1 with a certificate made here.

It speaks HTTP/2 only (ALPN ``h2``, as APNs does), records each request's
headers and body, and answers from a script: each entry is a status and
an optional JSON body, the last entry repeating.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path) -> tuple[Path, Path, str]:
    """A P-256 certificate for 127.0.0.1: cert file, key file, PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file = directory / "apns-cert.pem"
    key_file = directory / "apns-key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, pem.decode()


@dataclass
class ApnsRequest:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ApnsServer:
    """Answers ``POST /3/device/<token>`` from ``script``."""

    script: list[tuple[int, dict[str, Any] | None]] = field(
        default_factory=lambda: [(200, None)]
    )
    received: list[ApnsRequest] = field(default_factory=list)
    port: int = 0
    #: Seconds to wait before answering (timeouts).
    delay: float = 0.0
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self, cert_file: Path, key_file: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.set_alpn_protocols(["h2"])
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        headers: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytearray] = {}
        try:
            for _ in range(100_000):  # bounded: one read per loop
                data = await reader.read(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        sid = event.stream_id
                        headers[sid] = {str(k): str(v) for k, v in event.headers}
                        bodies[sid] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        sid = event.stream_id
                        await self._answer(
                            conn, sid, headers.pop(sid), bytes(bodies.pop(sid))
                        )
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._connections.discard(task)

    async def _answer(
        self,
        conn: h2.connection.H2Connection,
        stream_id: int,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        self.received.append(ApnsRequest(headers, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        index = min(len(self.received), len(self.script)) - 1
        status, answer = self.script[index]
        out = [(":status", str(status)), ("apns-id", headers.get("apns-id", ""))]
        if answer is None:
            conn.send_headers(stream_id, out, end_stream=True)
            return
        payload = json.dumps(answer).encode()
        out.append(("content-type", "application/json"))
        conn.send_headers(stream_id, out)
        conn.send_data(stream_id, payload, end_stream=True)
