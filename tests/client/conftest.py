"""The client's tests run against the real gateway of the gateway tests."""

from tests.gateway.conftest import gateway

__all__ = ["gateway"]
