"""Putting records into a target's outbox: checked against the schema, split to the per-message record limit."""

from __future__ import annotations

from typing import Any

import orjson

from tiers.outbox import Outbox
from tiers.schema import ServiceId, validate_records


def queue_records(outbox: Outbox, service: ServiceId, records: list[dict[str, Any]], created_ms: int,
                  max_records: int) -> list[str]:
    """Queue records as messages of at most ``max_records`` each; returns their dataIds.

    Records are validated first (a ProtocolError names the bad field): what the receiver would refuse for good is
    refused here, before it takes queue space.
    """
    validate_records(service, records)
    return [
        outbox.put(service.value, orjson.dumps(records[i:i + max_records]), len(records[i:i + max_records]),
                   created_ms)
        for i in range(0, len(records), max_records)
    ]
