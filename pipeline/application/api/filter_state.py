"""Reading the filter stage's state of one organisation, and writing commands to it.

The values are decoded by ``stages.filter.views.decode_value`` and handed back to the
filter's views: the API never looks inside them. Reads are of the organisation's partition
in the filter's stream of this deployment (``ctx.stream("sends")``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import SilenceCommand, encode
from contracts.partition import partition_of
from pipeline.application.api.context import ApiContext
from pipeline.foundation.runtime.jetstream import last_message
from pipeline.foundation.runtime.reads import read_partition_state
from pipeline.foundation.runtime.subjects import COMMANDS
from stages.filter.views import FilterValue, decode_value

__all__ = ["filter_state", "filter_value", "publish_command"]


async def filter_state(ctx: ApiContext, org: str, *prefixes: str) -> dict[str, Any]:
    """The filter's state keys of ``org`` under each ``<prefix>/<org>/``."""
    sends = ctx.stream("sends")
    p = partition_of(org, ctx.partitions)
    state: dict[str, Any] = {}
    for prefix in prefixes:
        for m, deleted in await read_partition_state(ctx.js, sends.stream, sends.state_filter(p, prefix, org),
                                                     sends.progress(p)):
            if not deleted:
                state[sends.key_of_state_subject(m.subject, m.headers)] = decode_value(m.data)
    return state


async def filter_value(ctx: ApiContext, org: str, key: str) -> FilterValue | None:
    """The filter's value at one state key of ``org`` (from the stream leader: a write just
    confirmed is seen), or None."""
    sends = ctx.stream("sends")
    raw = await last_message(ctx.js, sends.stream, sends.state(partition_of(org, ctx.partitions), key), leader=True)
    if raw is None or not raw[1]:
        return None
    return decode_value(raw[1])


async def publish_command(ctx: ApiContext, org: str, cmd: msgspec.Struct, msg_id: str) -> None:
    """A silence or acknowledgement command into TOCSIN_COMMANDS, on the organisation's partition."""
    p = partition_of(org, ctx.partitions)
    kind = "silence" if isinstance(cmd, SilenceCommand) else "ack"
    await ctx.js.publish(COMMANDS.out(p, kind), encode(cmd), headers={"Nats-Msg-Id": msg_id})
