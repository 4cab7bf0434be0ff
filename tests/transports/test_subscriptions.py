"""What a device registration must be to be stored, and what is refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from sessionpush.transports.endpoints import EndpointRefused, check_endpoint
from sessionpush.transports.subscriptions import (
    InvalidSubscription,
    PushSubscriptionJSON,
    PushSubscriptionKeys,
    Registration,
    parse_auth,
    parse_p256dh,
    to_subscription,
)
from tests.transports.conftest import Browser, b64

GOOD_ENDPOINT = "https://fcm.googleapis.com/fcm/send/dXf3:APA91b"


def webpush(
    endpoint: str = GOOD_ENDPOINT, p256dh: str = "", auth: str = ""
) -> Registration:
    browser = Browser()
    return Registration(
        channel="webpush",
        subscription=PushSubscriptionJSON(
            endpoint=endpoint,
            keys=PushSubscriptionKeys(
                p256dh=p256dh or browser.p256dh, auth=auth or b64(browser.auth)
            ),
        ),
    )


def register(registration: Registration) -> object:
    return to_subscription(
        registration, app="default", user="alice", device_id="d1", now=1.0
    )


def test_a_browser_subscription_is_stored_with_its_endpoint_and_keys() -> None:
    subscription = register(webpush())
    assert subscription.data["endpoint"] == GOOD_ENDPOINT  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://push.example/x",
        "https://user:pw@push.example/x",
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://192.168.1.1/x",
        "https://172.16.0.1/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "https://[fe80::1]/x",
        "https://localhost/x",
        "https://intranet/x",
        "ftp://push.example/x",
    ],
)
def test_an_endpoint_that_is_not_public_https_is_refused(endpoint: str) -> None:
    with pytest.raises(InvalidSubscription, match=r"\$\.subscription\.endpoint"):
        register(webpush(endpoint))


def test_loopback_endpoints_pass_only_with_the_testing_setting() -> None:
    assert check_endpoint("http://127.0.0.1:9/x", allow_loopback=True)
    with pytest.raises(EndpointRefused):
        check_endpoint("http://127.0.0.1:9/x")
    with pytest.raises(EndpointRefused):
        check_endpoint("http://10.0.0.1/x", allow_loopback=True)


def test_a_point_off_the_curve_is_refused() -> None:
    raw = bytearray(b"\x04" + b"\x01" * 64)
    with pytest.raises(InvalidSubscription, match="not on the P-256 curve"):
        parse_p256dh(b64(bytes(raw)))


def test_a_compressed_point_is_refused_with_its_length() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    from cryptography.hazmat.primitives import serialization

    compressed = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    with pytest.raises(InvalidSubscription, match="got 33 bytes"):
        parse_p256dh(b64(compressed))


@given(st.binary(min_size=0, max_size=40).filter(lambda b: len(b) != 16))
def test_an_auth_secret_of_any_length_but_16_bytes_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidSubscription, match="16-byte"):
        parse_auth(b64(raw))


@given(st.binary(min_size=16, max_size=16))
def test_any_16_bytes_are_an_auth_secret(raw: bytes) -> None:
    assert parse_auth(b64(raw)) == raw


@given(st.binary(min_size=65, max_size=65))
def test_random_65_bytes_are_accepted_only_when_they_are_a_curve_point(
    raw: bytes,
) -> None:
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        on_curve = True
    except ValueError:
        on_curve = False
    try:
        parse_p256dh(b64(raw))
        accepted = True
    except InvalidSubscription:
        accepted = False
    assert accepted == on_curve


@given(st.text(max_size=100))
def test_any_text_as_p256dh_is_parsed_or_refused_with_our_error(text: str) -> None:
    try:
        parse_p256dh(text)
    except InvalidSubscription as exc:
        assert exc.path == "$.subscription.keys.p256dh"


@given(
    st.ip_addresses().filter(lambda a: not a.is_global),
    st.sampled_from(["http", "https"]),
)
def test_no_non_public_ip_literal_is_ever_accepted(
    address: object, scheme: str
) -> None:
    host = f"[{address}]" if ":" in str(address) else str(address)
    with pytest.raises(EndpointRefused):
        check_endpoint(f"{scheme}://{host}/push")


def test_an_apns_token_must_be_hex() -> None:
    with pytest.raises(InvalidSubscription, match="hexadecimal"):
        register(Registration(channel="apns", token="not-a-token"))
    ok = register(Registration(channel="apns", token="AB" * 32, environment="sandbox"))
    assert ok.data == {"token": "ab" * 32, "environment": "sandbox"}  # type: ignore[attr-defined]


def test_a_webpush_registration_without_a_subscription_names_the_field() -> None:
    with pytest.raises(InvalidSubscription, match=r"at `\$\.subscription`"):
        register(Registration(channel="webpush"))
