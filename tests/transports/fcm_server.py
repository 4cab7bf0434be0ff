"""A local FCM: the OAuth token endpoint and ``messages:send``, on 127.0.0.1.

The token endpoint checks the RFC 7523 assertion with the public half of
the key the test generated and hands out numbered access tokens; the send
endpoint checks the bearer token and answers from a script (the last
answer repeats).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sessionpush.transports.google_oauth import FCM_SCOPE, JWT_BEARER

PROJECT = "shop-app-1234"
EMAIL = "push@shop-app-1234.iam.gserviceaccount.com"


@functools.cache
def service_key() -> rsa.RSAPrivateKey:
    """One RSA key for every test: generating 2,048 bits takes a while."""
    return rsa.generate_private_key(65537, 2048)


def fcm_error(status: int, code: str, rpc: str, message: str) -> dict[str, Any]:
    """An error body as FCM writes it (google.rpc.Status with FcmError)."""
    return {
        "error": {
            "code": status,
            "message": message,
            "status": rpc,
            "details": [
                {
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": code,
                }
            ],
        }
    }


@dataclass
class FcmService:
    key: rsa.RSAPrivateKey = field(default_factory=service_key)
    script: list[tuple[int, dict[str, str], dict[str, Any] | None]] = field(
        default_factory=lambda: [(200, {}, None)]
    )
    #: Answer of the token endpoint: None hands out a token.
    token_answer: tuple[int, dict[str, Any]] | None = None
    expires_in: int = 3600
    issued: list[str] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def key_file(self, directory: Path) -> Path:
        """A service-account key file naming this server's token endpoint."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        path = directory / "service-account.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "k1",
                    "private_key": pem,
                    "client_email": EMAIL,
                    "client_id": "1234567890",
                    "token_uri": f"{self.base}/token",
                }
            )
        )
        return path

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == JWT_BEARER
        claims = jwt.decode(
            str(form["assertion"]),
            self.key.public_key(),
            algorithms=["RS256"],
            audience=f"{self.base}/token",
            options={"verify_iat": False, "verify_exp": False},
        )
        self.assertions.append(claims)
        if self.token_answer is not None:
            status, body = self.token_answer
            return web.json_response(body, status=status)
        self.issued.append(f"ya29.test-{len(self.issued) + 1}")
        return web.json_response(
            {
                "access_token": self.issued[-1],
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            }
        )

    async def send(self, request: web.Request) -> web.Response:
        assert request.match_info["project"] == PROJECT
        authorization = request.headers.get("Authorization", "")
        self.authorizations.append(authorization)
        if authorization != f"Bearer {self.issued[-1] if self.issued else ''}":
            return web.json_response(
                {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401
            )
        self.sent.append(await request.json())
        index = min(len(self.sent), len(self.script)) - 1
        status, headers, body = self.script[index]
        if status == 200:
            name = f"projects/{PROJECT}/messages/{len(self.sent)}"
            return web.json_response({"name": name})
        return web.json_response(body or {}, status=status, headers=headers)


@asynccontextmanager
async def running(service: FcmService) -> AsyncIterator[FcmService]:
    app = web.Application()
    app.router.add_post("/token", service.token)
    app.router.add_post("/v1/projects/{project}/messages:send", service.send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    service.port = server.sockets[0].getsockname()[1]
    try:
        yield service
    finally:
        await runner.cleanup()


__all__ = ["EMAIL", "FCM_SCOPE", "PROJECT", "FcmService", "fcm_error", "running"]
