"""Acknowledgements: the answer to every message, its codes, and what a sender does with each."""

from __future__ import annotations

from enum import IntEnum, StrEnum

import orjson
from pydantic import BaseModel, ConfigDict, Field


class Outcome(StrEnum):
    """What a sender does with an answer."""

    DELIVERED = "delivered"  # remove the message from the queue
    RETRY = "retry"  # keep it; try again after a backoff (same dataId)
    REFUSED = "refused"  # it can never succeed: dead-letter it, count it, go on with the rest


class AckCode(IntEnum):
    """Codes of docs/uplink-protocol.md, "Acknowledgements"; the HTTP status that goes with each is ``http_status``."""

    ACCEPTED = 0
    DUPLICATE = 1  # this dataId was accepted before: nothing done again, not an error
    UNKNOWN_APP_ID = 1001
    BAD_SIGNATURE = 1002
    UNKNOWN_ENTERPRISE = 1003
    MALFORMED_JSON = 1004
    SCHEMA_VIOLATION = 1005
    TOO_LARGE = 1006
    CLOCK_SKEW = 1007
    RATE_LIMITED = 1008
    UNKNOWN_SERVICE = 1009
    UNSUPPORTED_VERSION = 1010
    INTERNAL_ERROR = 5000
    UNAVAILABLE = 5003

    @property
    def label(self) -> str:
        """Lower-case name used in metrics and logs, e.g. ``bad_signature``."""
        return self.name.lower()

    @property
    def http_status(self) -> int:
        """The HTTP status of an answer with this code."""
        return _HTTP_STATUS[self]

    @property
    def outcome(self) -> Outcome:
        """What the sender does: delivered, retry later, or dead-letter."""
        return _OUTCOME[self]


_HTTP_STATUS = {
    AckCode.ACCEPTED: 200,
    AckCode.DUPLICATE: 200,
    AckCode.UNKNOWN_APP_ID: 401,
    AckCode.BAD_SIGNATURE: 401,
    AckCode.UNKNOWN_ENTERPRISE: 403,
    AckCode.MALFORMED_JSON: 400,
    AckCode.SCHEMA_VIOLATION: 422,
    AckCode.TOO_LARGE: 413,
    AckCode.CLOCK_SKEW: 400,
    AckCode.RATE_LIMITED: 429,
    AckCode.UNKNOWN_SERVICE: 404,
    AckCode.UNSUPPORTED_VERSION: 400,
    AckCode.INTERNAL_ERROR: 500,
    AckCode.UNAVAILABLE: 503,
}

# Wrong credentials are a configuration fault of the whole sender, not of one message: its messages wait (and are
# counted) until the keys are fixed, rather than being thrown away. A skewed clock and a busy receiver pass too.
_OUTCOME = {
    AckCode.ACCEPTED: Outcome.DELIVERED,
    AckCode.DUPLICATE: Outcome.DELIVERED,
    AckCode.UNKNOWN_APP_ID: Outcome.RETRY,
    AckCode.BAD_SIGNATURE: Outcome.RETRY,
    AckCode.UNKNOWN_ENTERPRISE: Outcome.REFUSED,
    AckCode.MALFORMED_JSON: Outcome.REFUSED,
    AckCode.SCHEMA_VIOLATION: Outcome.REFUSED,
    AckCode.TOO_LARGE: Outcome.REFUSED,
    AckCode.CLOCK_SKEW: Outcome.RETRY,
    AckCode.RATE_LIMITED: Outcome.RETRY,
    AckCode.UNKNOWN_SERVICE: Outcome.REFUSED,
    AckCode.UNSUPPORTED_VERSION: Outcome.REFUSED,
    AckCode.INTERNAL_ERROR: Outcome.RETRY,
    AckCode.UNAVAILABLE: Outcome.RETRY,
}


class Ack(BaseModel):
    """``{code, dataId, message[, retryAfter]}``: the receiver's answer to one message."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: int
    dataId: str | None = None  # None only when the message was too broken to name its dataId
    message: str = Field(default="", max_length=2000)
    retryAfter: float | None = Field(default=None, ge=0)  # seconds, with code 1008

    @property
    def outcome(self) -> Outcome:
        """What the sender does with this answer; a code it does not know is retried, never thrown away."""
        try:
            return AckCode(self.code).outcome
        except ValueError:
            return Outcome.RETRY

    def to_json(self) -> bytes:
        """The wire form (members with no value left out)."""
        return orjson.dumps(self.model_dump(exclude_none=True))


class ProtocolError(Exception):
    """A message refused with a code and a message naming what is wrong (and where, e.g. ``data[3].value``)."""

    def __init__(self, code: AckCode, message: str, data_id: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data_id, self.retry_after = code, message, data_id, retry_after

    def ack(self) -> Ack:
        """The answer that refuses the message."""
        return Ack(code=int(self.code), dataId=self.data_id, message=self.message, retryAfter=self.retry_after)
