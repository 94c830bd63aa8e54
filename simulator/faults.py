"""Fault knobs of the simulator, as one pydantic model.

The same :class:`Faults` is set at start (``--faults file.json|.yaml``, or
``simulator.server.start(faults=...)``), at runtime through
``PUT /_sim/faults`` (a JSON merge) or :meth:`Simulator.set_faults`.

Probabilities are 0..1 and rolled per event with the simulator's RNG
(``seed`` makes runs reproducible). Durations carry their unit in the name.

Out-of-credit answers of ``balance_after``, per profile:

* midjourney-proxy, uniapi, dataeyes: HTTP 200
  ``{"code":25,"description":"余额不足","result":null}``
  (code 25 as listed by the reseller docs in seed 000);
* newapi: HTTP 400 ``{"description":"quota_not_enough ","type":"upstream_error","code":4}``;
* trueai: HTTP 200 ``{"success":false,"code":-1,"message":"余额不足","timestamp":"…"}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BANNED_WORDS = ("nude", "gore")
DEFAULT_STUCK_PROGRESS = "93%"


class Faults(BaseModel):
    """All fault knobs; every field has a harmless default (no faults)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int | None = Field(None, description="RNG seed for reproducible fault rolls and ids")
    drop_callbacks: float = Field(0.0, ge=0, le=1, description="P(a callback is never sent)")
    duplicate_callbacks: float = Field(0.0, ge=0, le=1, description="P(a callback is sent twice)")
    delay_callbacks_ms: int = Field(0, ge=0, description="max random delay before each callback")
    reorder_callbacks: bool = Field(
        False, description="hold non-terminal callbacks so later states can arrive first"
    )
    stuck: float = Field(0.0, ge=0, le=1, description="P(a task stays IN_PROGRESS forever)")
    stuck_progress: str = Field(DEFAULT_STUCK_PROGRESS, description="progress a stuck task shows")
    stuck_timeout_s: float | None = Field(
        None,
        ge=0,
        description="if set, stuck tasks fail with 任务超时 after this many real seconds",
    )
    fail: float = Field(0.0, ge=0, le=1, description="P(a task ends FAILURE with an MJ error)")
    http_500: float = Field(0.0, ge=0, le=1, description="P(any upstream API request answers 500)")
    http_500_submits: float = Field(
        0.0, ge=0, le=1, description="P(a submit answers 500 before creating anything)"
    )
    hung_submit: float = Field(
        0.0, ge=0, le=1, description="P(a submit creates the task but answers late)"
    )
    hung_submit_ms: int = Field(0, ge=0, description="delay of a hung submit answer")
    queue_full_burst: int = Field(0, ge=0, description="the next N submits get queue-full")
    relax_queue_s: float = Field(
        0.0, ge=0, description="RELAX tasks wait at least this many real seconds in their "
        "account's queue (NOT_START, no startTime) before they get a running slot; the "
        "queue behind them waits too (FIFO)",
    )
    omit_from_lists_every: int = Field(
        0, ge=0, description="every Nth list-by-condition answer leaves every task out "
        "(a reseller's stale cache); 0 = never",
    )
    balance_after: int | None = Field(
        None, ge=0, description="after N accepted submits (counted from when set) → out of credit"
    )
    banned_words: list[str] = Field(default_factory=lambda: list(DEFAULT_BANNED_WORDS))
    large_image_bytes: int = Field(
        0, ge=0, description="if > 0, final images are noise PNGs of about this many bytes"
    )

    def merged(self, patch: dict[str, Any]) -> Faults:
        """Return a validated copy with ``patch`` applied (JSON-merge of top-level keys)."""
        return Faults.model_validate({**self.model_dump(), **patch})


def load_faults(path: str | Path) -> Faults:
    """Load faults from a ``.json`` or ``.yaml``/``.yml`` file (YAML needs PyYAML)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in {".yaml", ".yml"}:
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError("YAML fault files need PyYAML (pip install pyyaml)") from exc
        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text or "{}")
    if not isinstance(data, dict):
        raise TypeError(f"{p}: faults must be a mapping, got {type(data).__name__}")
    return Faults.model_validate(data)
