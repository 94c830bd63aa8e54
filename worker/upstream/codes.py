"""What the upstream's business ``code`` values mean: the small set of outcomes mjflow acts on,
and the base code table that profiles override (``Profile.code_rules``)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class Outcome(str, Enum):
    ACCEPTED = "accepted"
    NEEDS_MODAL = "needs_modal"
    RETRY_LATER = "retry_later"
    REJECTED = "rejected"
    OUT_OF_CREDIT = "out_of_credit"
    AUTH_FAILED = "auth_failed"
    OUTCOME_UNKNOWN = "outcome_unknown"
    NOT_FOUND = "not_found"


class Pressure(str, Enum):
    """What a submit that did not go through says about the upstream, for the dispatch
    window (``worker.flow.window``): set on every RETRY_LATER and OUTCOME_UNKNOWN answer."""

    QUEUE_FULL = "queue_full"    # it holds as many of our tasks as it takes: its capacity
    RATE_LIMIT = "rate_limit"    # too many requests or overloaded (429, gateway code 30)
    TRANSIENT = "transient"      # a failure that says nothing about load: 5xx, timeout,
    #                              connection refused, no account available right now

    @property
    def congestion(self) -> bool:
        return self is not Pressure.TRANSIENT


@dataclass(frozen=True)
class CodeRule:
    """What one business ``code`` means: the outcome and a short readable meaning, plus the
    outcome to use instead when the answer has no task id or no ``bannedWord``."""

    outcome: Outcome
    meaning: str
    when_no_id: tuple[Outcome, str] | None = None
    when_no_banned_word: tuple[Outcome, str] | None = None


# --- the code table -----------------------------------------------------------------------

O = Outcome

#: midjourney-proxy ReturnCode (novicezk and trueai) plus the gateway codes (new-api 4/5/30,
#: trueai's ``Result`` envelope -1). Profiles override entries (``Profile.code_rules``).
BASE_CODE_RULES: Mapping[int, CodeRule] = {
    1: CodeRule(O.ACCEPTED, "submitted"),
    22: CodeRule(O.ACCEPTED, "queued"),
    21: CodeRule(O.NEEDS_MODAL, "waiting for modal confirm",
                 when_no_id=(O.REJECTED, "code 21 without a task id")),
    3: CodeRule(O.RETRY_LATER, "no upstream account available"),
    4: CodeRule(O.REJECTED, "validation error"),
    5: CodeRule(O.OUTCOME_UNKNOWN, "gateway lost the upstream answer"),
    9: CodeRule(O.RETRY_LATER, "system error or queue full"),
    23: CodeRule(O.RETRY_LATER, "queue full"),
    24: CodeRule(O.REJECTED, "banned prompt"),
    25: CodeRule(O.OUT_OF_CREDIT, "balance insufficient"),
    30: CodeRule(O.RETRY_LATER, "gateway overloaded"),
    -1: CodeRule(O.REJECTED, "upstream refused"),
}
QUEUE_FULL_RULE = CodeRule(O.RETRY_LATER, "queue full")
UNKNOWN_CODE_RULE = CodeRule(O.REJECTED, "unexpected code")
