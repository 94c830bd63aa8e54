"""The dispatch window: the per-upstream slot semaphore and its adaptive size.

Each upstream of the fleet has its own: slots are leases in ``{p}:slots:{upstream}``
(step id -> expiry), its state is ``{p}:window:{upstream}``. The window size follows AIMD:
every accepted submit grows it by 1/size (up to ``MJFLOW_MAX_IN_FLIGHT``), every
"queue full" halves it and holds dispatch for a short cool-down. Out of credit and
auth failures pause that upstream's dispatch until an operator resumes it (``mjflow
resume NAME``, ``POST /v1/upstreams/{name}/resume`` or the dashboard); nothing is failed
for it, and the fleet's other upstreams take the steps they can.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from worker.jobs.model import DEFAULT_UPSTREAM
from worker.keys import Keys

log = logging.getLogger("mjflow.window")
RECENT_ANSWERS = 50

# Claim up to ARGV[limit] queued steps of the queues whose route is one of ARGV[10..] (none
# given: of every queue):
# priority first, then the least recently served lane; each is marked with its upstream.
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
local w = redis.call('HMGET', window_key, 'size', 'paused', 'cooldown_until')
if w[2] == '1' then return {} end
if w[3] and tonumber(w[3]) > now then return {} end
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
return claimed
"""

# AIMD: ARGV[1] = 'grow' | 'shrink', ARGV[2] = max, ARGV[3] = now, ARGV[4] = cooldown_s
ADJUST_LUA = """
local size = tonumber(redis.call('HGET', KEYS[1], 'size') or ARGV[2])
local max_size = tonumber(ARGV[2])
if ARGV[1] == 'grow' then
  size = math.min(max_size, size + 1 / math.max(size, 1))
else
  size = math.max(1, size / 2)
  redis.call('HSET', KEYS[1], 'cooldown_until', tonumber(ARGV[3]) + tonumber(ARGV[4]))
end
redis.call('HSET', KEYS[1], 'size', tostring(size))
return tostring(size)
"""


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
        self._claim = r.register_script(CLAIM_LUA)
        self._adjust = r.register_script(ADJUST_LUA)

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

    def grow(self) -> float:
        return float(self._adjust(keys=[self._state_key], args=["grow", self.max, 0, 0]))

    def shrink(self, cooldown_s: float, now: float | None = None) -> float:
        now = time.time() if now is None else now
        size = float(self._adjust(keys=[self._state_key],
                                  args=["shrink", self.max, now, cooldown_s]))
        log.warning("upstream queue full: window shrunk to %.1f, holding %.0fs", size, cooldown_s)
        return size

    def pause(self, reason: str) -> None:
        self.r.hset(self._state_key, mapping={"paused": "1", "reason": reason,
                                                 "since": repr(time.time())})
        log.error("dispatch to %s paused: %s (resume with `mjflow resume %s`)", self.upstream, reason, self.upstream)

    def resume(self) -> None:
        self.r.hset(self._state_key, mapping={"paused": "0", "reason": "", "since": "",
                                                 "cooldown_until": "0"})
        log.warning("dispatch to %s resumed", self.upstream)

    def room(self, now: float) -> int:
        """Free slots now: 0 while paused or cooling down."""
        size, paused, cooldown = self.r.hmget(self._state_key, "size", "paused", "cooldown_until")
        if paused == "1" or (cooldown and float(cooldown) > now):
            return 0
        used = self.r.zcount(self._slots_key, f"({now}", "+inf")
        return max(0, min(self.max, int(float(size or self.max))) - used)

    def paused_reason(self) -> str | None:
        paused, reason = self.r.hmget(self._state_key, "paused", "reason")
        return (reason or "paused") if paused == "1" else None

    def state(self) -> dict[str, Any]:
        h = self.r.hgetall(self._state_key)
        self.r.zremrangebyscore(self._slots_key, "-inf", time.time())
        return {
            "size": round(float(h.get("size") or self.max), 2), "max": self.max,
            "inUse": self.r.zcard(self._slots_key), "paused": h.get("paused") == "1",
            "reason": h.get("reason") or None,
            "pausedSince": float(h["since"]) if h.get("since") else None,
            "cooldownUntil": float(h.get("cooldown_until") or 0) or None,
        }

    def record_answer(self, entry: dict[str, Any]) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(self._answers_key, json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(self._answers_key, 0, RECENT_ANSWERS - 1)
        pipe.hincrby(self.keys.counter("answers"), f"{self.upstream}|{entry.get('outcome', '?')}", 1)
        pipe.execute()

    def recent_answers(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self._answers_key, 0, -1)]
