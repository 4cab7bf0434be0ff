"""An asyncio client of the session protocol (``docs/protocol.md``).

It behaves as the web SDK does: numbered events sent in batches, kept
while offline, re-sent without doubles after a reconnect that resumes the
session. ``replay --via`` and the benchmarks drive gateways with it.
"""

from sessionpush.client.backoff import Backoff, Pacer
from sessionpush.client.buffer import SendBuffer
from sessionpush.client.core import Client, ClientClosed, ClientState

__all__ = ["Backoff", "Client", "ClientClosed", "ClientState", "Pacer", "SendBuffer"]
