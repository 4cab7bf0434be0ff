"""RFC 8291 encryption as pywebpush does it for us, and the size limit."""

from __future__ import annotations

import base64

import http_ece
import pytest
import pywebpush
from cryptography.hazmat.primitives.asymmetric import ec

from sessionpush.transports.vapid import VapidSigner
from sessionpush.transports.webpush import MAX_PLAINTEXT, WebPushTransport
from tests.transports.conftest import Browser, PushService, message


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# RFC 8291 appendix A.
PLAINTEXT = b"When I grow up, I want to be a watermelon"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpk"
    "NtoIAiw4"
)
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3"
    "vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuw"
    "XPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def rfc_sender_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(
        int.from_bytes(unb64(AS_PRIVATE), "big"), ec.SECP256R1()
    )


def test_pywebpush_encode_reproduces_the_rfc_8291_appendix_a_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the RFC's sender key and salt, the body is the RFC's, byte for byte."""
    monkeypatch.setattr(
        pywebpush.ec, "generate_private_key", lambda *args: rfc_sender_key()
    )
    monkeypatch.setattr(http_ece.os, "urandom", lambda n: unb64(SALT))
    pusher = pywebpush.WebPusher(
        {
            "endpoint": "https://push.example/x",
            "keys": {"p256dh": UA_PUBLIC, "auth": AUTH},
        }
    )

    encoded = pusher.encode(PLAINTEXT, "aes128gcm")

    assert encoded["body"] == unb64(BODY)


def test_the_rfc_example_decrypts_back_to_the_watermelon() -> None:
    ua_private = ec.derive_private_key(
        int.from_bytes(unb64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"), "big"),
        ec.SECP256R1(),
    )
    plain = http_ece.decrypt(
        unb64(BODY),
        private_key=ua_private,
        auth_secret=unb64(AUTH),
        version="aes128gcm",
    )
    assert plain == PLAINTEXT


def padded_to(size: int) -> dict[str, object]:
    """Message fields whose JSON plaintext is exactly ``size`` bytes."""
    probe = WebPushTransport({}).plaintext(message(body=""))
    return {"body": "x" * (size - len(probe))}


def signer() -> VapidSigner:
    return VapidSigner(
        ec.generate_private_key(ec.SECP256R1()), "mailto:ops@shop.example"
    )


async def test_a_3993_byte_plaintext_is_sent_as_a_4096_byte_body(
    push_service: PushService, browser: Browser
) -> None:
    transport = WebPushTransport({"default": signer()}, allow_loopback=True)
    outbound = message(**padded_to(MAX_PLAINTEXT))
    assert len(transport.plaintext(outbound)) == 3993

    result = await transport.send(outbound, browser.subscription(push_service.url()))
    await transport.close()

    assert result.ok, result.detail
    (request,) = push_service.received
    assert len(request.body) == 4096
    assert browser.decrypt(request.body) == transport.plaintext(outbound)


async def test_a_3994_byte_plaintext_is_refused_before_sending(
    push_service: PushService, browser: Browser
) -> None:
    transport = WebPushTransport({"default": signer()}, allow_loopback=True)
    outbound = message(**padded_to(MAX_PLAINTEXT + 1))
    assert len(transport.plaintext(outbound)) == 3994

    result = await transport.send(outbound, browser.subscription(push_service.url()))
    await transport.close()

    assert not result.ok
    assert "4097 bytes" in result.detail and "4096" in result.detail
    assert push_service.received == []
