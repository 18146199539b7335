"""Message schemas shared by Tocsin's stages: the only coupling between them.

Every message on a JetStream subject is one of the tagged msgspec Structs below, encoded
as JSON. Tags carry the schema version (``event.v1``); decoders tolerate unknown fields so
a newer producer can add fields (always with defaults) without breaking an older consumer.

Times are Unix seconds (float, UTC) everywhere inside the pipeline; RFC 3339 strings exist
only at the edges (API, webhook payloads).
"""

from contracts.messages import (
    AckCommand,
    Alert,
    AlertChange,
    Cause,
    DeadLetter,
    Event,
    GroupFlush,
    Integration,
    Message,
    PushedAlert,
    PushedAlerts,
    RuleCommand,
    SendRequest,
    Silence,
    SilenceCommand,
    SilenceMatcher,
    decode,
    decode_as,
    encode,
)

__all__ = [
    "AckCommand",
    "Alert",
    "AlertChange",
    "Cause",
    "DeadLetter",
    "Event",
    "GroupFlush",
    "Integration",
    "Message",
    "PushedAlert",
    "PushedAlerts",
    "RuleCommand",
    "SendRequest",
    "Silence",
    "SilenceCommand",
    "SilenceMatcher",
    "decode",
    "decode_as",
    "encode",
]
