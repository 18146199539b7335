"""A nats-py ``Client`` whose message-header parsing costs less CPU.

nats-py 2.16 parses the header block of every message it receives with
``Client._parse_header_lines`` (when ``fast_mail_parser`` is not installed, as here). Per
line it partitions bytes, strips and decodes the name, runs a generator over its characters
to look for whitespace, then strips and decodes the value: about 8% of a stage's CPU in
profiles. :class:`Client` overrides that static method with one that decodes the whole
block once and checks names with str methods that run in C, about 2.5 times as fast, with
the same result for every input: tests/unit/runtime/test_natsclient.py compares the two
on arbitrary bytes.
"""

from __future__ import annotations

import nats.aio.client

__all__ = ["Client"]

# What bytes.strip() strips: ASCII whitespace in the bytes sense. str.strip() with no
# argument would also strip \x1c-\x1f (and non-ASCII spaces), which nats-py keeps in a value
# and which make nats-py skip a name.
_BYTES_WHITESPACE = " \t\n\r\x0b\x0c"


class Client(nats.aio.client.Client):
    """``nats.aio.client.Client`` with a faster ``_parse_header_lines``; nothing else differs."""

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        """Parse ``Name: Value\\r\\n`` lines exactly as nats-py 2.16 does, faster.

        Equivalent to the original because every character it splits or strips on (CR, LF,
        ``:``, ASCII whitespace) is an ASCII byte, which UTF-8 never uses inside a multi-byte
        sequence and which ends any malformed one: decoding the whole block with
        ``errors="replace"`` then splitting gives the same pieces as splitting the bytes then
        decoding each piece. A name is non-ASCII after decoding exactly when its bytes are. For
        an ASCII name, ``isprintable()`` is false for every whitespace character but the space
        (``\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f`` are control characters), so a printable name without a
        space has no whitespace; any other name is checked character by character as nats-py
        does (it may hold a control character that is not whitespace, which nats-py accepts).
        """
        out: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep:  # no colon, or an empty line
                continue
            key = name.strip(_BYTES_WHITESPACE)
            if key.isascii() and ((key.isprintable() and " " not in key) or not any(map(str.isspace, key))):
                out[key] = value.strip(_BYTES_WHITESPACE)
        return out
