"""The dispatch window: the per-upstream slot semaphore and its adaptive size.

Each upstream of the fleet has its own: slots are leases in ``{p}:slots:{upstream}``
(step id -> expiry), its state is ``{p}:window:{upstream}``. The window size adapts to what the
upstream answers (``react``; the rules are in ``worker.flow.window_rules``): congestion
(queue full, rate limited) shrinks it at most once per cool-down, a queue full teaches
it the upstream's capacity, accepted submits grow it back fast (to the most the upstream
took, until a second queue full confirms less) and slowly beyond, and plain failures (5xx, timeouts) never shrink it but open a breaker
after a run of them. Out of credit and auth failures pause that upstream's dispatch until
an operator resumes it (``mjflow resume NAME``, ``POST /v1/upstreams/{name}/resume`` or
the dashboard); nothing is failed for it, and the fleet's other upstreams take the steps
they can.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from worker.flow.window_rules import ADAPT_LUA, RESET_BREAKER, Rules
from worker.jobs.model import DEFAULT_UPSTREAM
from worker.keys import Keys
from worker.upstream import Answer, Outcome, Pressure

log = logging.getLogger("mjflow.window")
RECENT_ANSWERS = 50

# Claim up to ARGV[limit] queued steps of the queues whose route is one of ARGV[10..] (none
# given: of every queue): priority first, then the least recently served lane; each is
# marked with its upstream.
CLAIM_LUA = """
local lanes_key, slots_key, window_key, pending_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local seq_key = KEYS[5]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local max_size = tonumber(ARGV[3])
local lease_s = tonumber(ARGV[4])
local grace_s = tonumber(ARGV[5])
local ready_tpl, step_tpl = ARGV[6], ARGV[7]
local bucket = tonumber(ARGV[8])
local upstream = ARGV[9]
local routes, any_route = {}, #ARGV < 10
for i = 10, #ARGV do routes[ARGV[i]] = true end
local w = redis.call('HMGET', window_key, 'size', 'paused', 'cooldown_until', 'breaker',
                     'breaker_hold')
if w[2] == '1' then return {} end
if w[3] and tonumber(w[3]) > now then return {} end
local probe = w[4] == 'open' or w[4] == 'probing'   -- the breaker lets one submit through
if probe then limit = math.min(limit, 1) end
local size = math.floor(tonumber(w[1] or max_size))
if size > max_size then size = max_size end
redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', now)
local used = redis.call('ZCARD', slots_key)
local claimed = {}
local served
while used < size and #claimed < limit do
  local lanes = redis.call('ZRANGE', lanes_key, 0, -1, 'WITHSCORES')
  local best, best_head, best_prio, best_served = nil, nil, nil, nil
  for i = 1, #lanes, 2 do
    local lane, lane_served = lanes[i], tonumber(lanes[i + 1])
    if any_route or routes[string.match(lane, '^([^/]*)/')] then
      local head = redis.call('ZRANGE', string.format(ready_tpl, lane), 0, 0, 'WITHSCORES')
      if #head == 0 then
        redis.call('ZREM', lanes_key, lane)
      else
        local prio = math.floor(tonumber(head[2]) / bucket)
        if best == nil or prio < best_prio or (prio == best_prio and lane_served < best_served) then
          best, best_head, best_prio, best_served = lane, head[1], prio, lane_served
        end
      end
    end
  end
  if best == nil then break end
  redis.call('ZREM', string.format(ready_tpl, best), best_head)
  served = redis.call('HINCRBY', seq_key, 'served_seq', 1)
  redis.call('ZADD', lanes_key, served, best)
  local step_key = string.format(step_tpl, best_head)
  if redis.call('HGET', step_key, 'status') == 'queued' then
    redis.call('HSET', step_key, 'status', 'submitting', 'submit_started', '', 'upstream', upstream)
    redis.call('ZADD', slots_key, now + lease_s, best_head)
    redis.call('ZADD', pending_key, now + grace_s, best_head)
    used = used + 1
    table.insert(claimed, best_head)
  end
end
if probe and #claimed > 0 then
  redis.call('HSET', window_key, 'breaker', 'probing', 'hold', 'breaker probe',
             'cooldown_until', now + (tonumber(w[5]) or 0))
end
return claimed
"""

EVENTS = {Pressure.QUEUE_FULL: "queue_full", Pressure.RATE_LIMIT: "rate_limit",
          Pressure.TRANSIENT: "failure"}


class Window:
    def __init__(self, r: redis.Redis, keys: Keys, max_in_flight: int,
                 upstream: str = DEFAULT_UPSTREAM) -> None:
        self.r = r
        self.keys = keys
        self.max = max_in_flight
        self.upstream = upstream
        self._state_key = keys.window(upstream)
        self._slots_key = keys.slots(upstream)
        self._answers_key = keys.answers(upstream)
        self._counts_key = keys.counter(f"window:{upstream}")
        self._claim = r.register_script(CLAIM_LUA)
        self._adapt = r.register_script(ADAPT_LUA)

    def claim(self, *, limit: int, lease_s: float, grace_s: float, bucket: int,
              routes: list[str] | None = None, now: float | None = None) -> list[str]:
        """Claim queued steps of ``routes`` (see :mod:`worker.jobs.routes`; None: of every
        route) while there is room."""
        if routes is not None and not routes:
            return []
        now = time.time() if now is None else now
        k = self.keys
        return self._claim(
            keys=[k.lanes(), self._slots_key, self._state_key, k.pending_submit(), k.dispatch()],
            args=[now, limit, self.max, lease_s, grace_s, k.ready("%s"), k.step("%s"), bucket,
                  self.upstream, *(routes or ())],
        )

    def react(self, answer: Answer, rules: Rules, now: float | None = None) -> str | None:
        """What a submit's answer does to the window (after the step moved): an accept
        grows it, congestion shrinks it (once per cool-down), a transient failure counts
        toward the breaker. Returns the event applied, None for other answers."""
        if answer.outcome in (Outcome.ACCEPTED, Outcome.NEEDS_MODAL):
            event = "accept"
        elif answer.pressure is not None:
            event = EVENTS[answer.pressure]
        else:
            return None
        now = time.time() if now is None else now
        cooldown_s = answer.retry_after_s or rules.cooldown_s
        k = self.keys
        size, breaker, applied = self._adapt(
            keys=[self._state_key, self._slots_key, k.pending_submit(), self._counts_key],
            args=[event, self.max, now, cooldown_s, rules.breaker_failures,
                  rules.breaker_cooldown_s, rules.breaker_max_s,
                  "" if answer.queued_ahead is None else answer.queued_ahead])
        if event in ("queue_full", "rate_limit") and applied == "1":
            log.warning("upstream %s: %s: window shrunk to %.1f, holding %.1fs", self.upstream,
                        event.replace("_", " "), float(size), cooldown_s)
        elif event == "failure" and breaker == "open" and applied == "1":
            log.warning("upstream %s failing (%s): breaker open, dispatch held", self.upstream,
                        answer.message)
        return event

    def pause(self, reason: str) -> None:
        self.r.hset(self._state_key, mapping={"paused": "1", "reason": reason,
                                              "since": repr(time.time())})
        log.error("dispatch to %s paused: %s (resume with `mjflow resume %s`)", self.upstream,
                  reason, self.upstream)

    def resume(self) -> None:
        self.r.hset(self._state_key, mapping={"paused": "0", "reason": "", "since": "",
                                              "cooldown_until": "0", "hold": "",
                                              **RESET_BREAKER})
        log.warning("dispatch to %s resumed", self.upstream)

    def room(self, now: float) -> int:
        """Free slots now: 0 while paused or holding (a cool-down, the breaker); 1 while
        the breaker lets a probe through."""
        size, paused, cooldown, breaker = self.r.hmget(self._state_key, "size", "paused",
                                                       "cooldown_until", "breaker")
        if paused == "1" or (cooldown and float(cooldown) > now):
            return 0
        used = self.r.zcount(self._slots_key, f"({now}", "+inf")
        free = max(0, min(self.max, int(float(size or self.max))) - used)
        return min(free, 1) if breaker in ("open", "probing") else free

    def paused_reason(self) -> str | None:
        paused, reason = self.r.hmget(self._state_key, "paused", "reason")
        return (reason or "paused") if paused == "1" else None

    def state(self) -> dict[str, Any]:
        now = time.time()
        h = self.r.hgetall(self._state_key)
        self.r.zremrangebyscore(self._slots_key, "-inf", now)
        cooldown_until = float(h.get("cooldown_until") or 0) or None
        counts = self.r.hgetall(self._counts_key)
        return {
            "size": round(float(h.get("size") or self.max), 2), "max": self.max,
            "inUse": self.r.zcard(self._slots_key), "paused": h.get("paused") == "1",
            "reason": h.get("reason") or None,
            "pausedSince": float(h["since"]) if h.get("since") else None,
            "cooldownUntil": cooldown_until,
            "holdReason": (h.get("hold") or None) if (cooldown_until or 0) > now else None,
            "capacity": _int(h.get("capacity")), "knownGood": _int(h.get("good")),
            "capacityLearnedAt": float(h.get("capacity_at") or 0) or None,
            "upstreamQueued": _int(h.get("upstream_queued")),
            "breaker": h.get("breaker") or "closed",
            "consecutiveFailures": int(h.get("failures") or 0),
            "breakerTrips": int(h.get("trips") or 0),
            "signals": {name: int(counts.get(field) or 0) for name, field in SIGNALS},
        }

    def record_answer(self, entry: dict[str, Any]) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(self._answers_key, json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(self._answers_key, 0, RECENT_ANSWERS - 1)
        pipe.hincrby(self.keys.counter("answers"), f"{self.upstream}|{entry.get('outcome', '?')}",
                     1)
        pipe.execute()

    def recent_answers(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self._answers_key, 0, -1)]


#: ``state()["signals"]``: counts since the prefix was created (the ``{p}:counter:window``
#: fields the rules increment).
SIGNALS = (("shrinks", "shrinks"), ("congestionSameCooldown", "congestion_same_cooldown"),
           ("transientFailures", "transient_failures"), ("breakerOpened", "breaker_trips"),
           ("breakerClosed", "breaker_closed"))


def _int(value: str | None) -> int | None:
    return int(float(value)) if value else None
