"""sessionpush: a real-time rules engine for session-triggered push."""

__version__ = "0.1.0"
