"""How the dispatch window reacts to submit answers: the rules, as one Lua script that
``worker.flow.window.Window`` runs on its hash (one round trip, atomic with the count).

``held`` is how many of our tasks the upstream holds at that moment: leases in
``{p}:slots`` whose submit was answered (not in ``{p}:pending_submit``).

* **accepted** (code 1/21/22): the breaker closes (consecutive failures 0; a breaker hold
  ends). The upstream took ``held`` tasks, so a learned capacity below that rises to it,
  and so does the known-good size (``good``: the most it ever took). Below its ceiling
  (the larger of the learned capacity and the known-good size, else
  ``MJFLOW_MAX_IN_FLIGHT``) the window grows by 1 per accept, which doubles it every round
  trip (slow start); at the ceiling by 1/size per accept, which probes one slot above it
  per window's worth of accepts.
* **queue full** (``Pressure.QUEUE_FULL``): the upstream holds as many as it takes, so
  the capacity is ``held`` (at least 1, at most the max) and the window shrinks to it.
  The window grows back fast toward the known-good size; a queue full that comes again
  at the learned capacity (``held`` at or above it) confirms it, and the known-good size
  drops to it: from then on only the slow probe goes higher. A queue full that lied (a
  burst while the upstream had room) costs one round trip of growth, not a slow climb.
* **rate limited** (``Pressure.RATE_LIMIT``): the window halves; the capacity is kept.
  Either congestion holds dispatch for the cool-down (``Retry-After``, else
  ``MJFLOW_QUEUE_FULL_BACKOFF_S``) and shrinks the window at most once per cool-down:
  the answers of submits already on their way belong to the same event.
* **transient failure** (``Pressure.TRANSIENT``: 5xx, timeout, connection refused): no
  shrink. ``MJFLOW_BREAKER_FAILURES`` in a row open the breaker: dispatch holds for
  ``MJFLOW_BREAKER_COOLDOWN_S``, then one probe submit goes out (``probing``; the claim
  script sends one and holds again); each probe that fails doubles the hold, up to
  ``MJFLOW_BREAKER_MAX_COOLDOWN_S``. The next accept closes it.
"""
from __future__ import annotations

from dataclasses import dataclass

from worker.settings import Settings

#: Window hash fields the rules keep (beside size, paused, reason, since, cooldown_until).
#: capacity: learned capacity ('' unknown); capacity_at: when it was last set by a
#: queue full; shrink_until: end of the congestion cool-down; hold: why dispatch holds;
#: failures: consecutive transient failures; trips: breaker openings since the last
#: accept; breaker: closed | open | probing; breaker_hold: the current breaker hold (s);
#: upstream_queued: the last numberOfQueues (tasks ahead) a queued answer reported;
#: good: the known-good size (the most the upstream took, until a queue full confirms less).
RESET_BREAKER = {"breaker": "closed", "failures": "0", "trips": "0", "breaker_hold": "0"}

# KEYS: window hash, slots, pending_submit, counter hash
# ARGV: event (accept | queue_full | rate_limit | failure), max, now, cooldown_s,
#       breaker_failures, breaker_cooldown_s, breaker_max_s, queued_ahead ('' if none)
ADAPT_LUA = """
local wk, slots_key, pending_key, counts_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local event, max_size, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cooldown_s = tonumber(ARGV[4])
local w = redis.call('HMGET', wk, 'size', 'capacity', 'shrink_until', 'cooldown_until',
                     'failures', 'trips', 'breaker', 'hold', 'good')
local size = math.min(max_size, tonumber(w[1]) or max_size)
local capacity = tonumber(w[2])
if capacity and capacity > max_size then capacity = max_size end
local cooldown_until = tonumber(w[4]) or 0
local failures, trips = tonumber(w[5]) or 0, tonumber(w[6]) or 0
local breaker, hold = w[7] or 'closed', w[8] or ''
local good = math.min(max_size, tonumber(w[9]) or 0)
local held = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', slots_key, now, '+inf')) do
  if not redis.call('ZSCORE', pending_key, m) then held = held + 1 end
end
local out = {}
if event == 'accept' then
  if breaker ~= 'closed' then
    redis.call('HINCRBY', counts_key, 'breaker_closed', 1)
    if string.sub(hold, 1, 7) == 'breaker' then
      cooldown_until = 0
      hold = ''
    end
  end
  breaker, failures, trips = 'closed', 0, 0
  if capacity and held > capacity then capacity = math.min(max_size, held) end
  good = math.max(good, math.min(max_size, held))
  local ceiling = capacity and math.max(capacity, good) or max_size
  if size < ceiling then
    size = math.min(ceiling, size + 1)
  else
    size = math.min(max_size, size + 1 / math.max(size, 1))
  end
  if ARGV[8] ~= '' then out = {'upstream_queued', ARGV[8]} end
  redis.call('HSET', wk, 'breaker_hold', '0')
elseif event == 'queue_full' or event == 'rate_limit' then
  if now < (tonumber(w[3]) or 0) then
    redis.call('HINCRBY', counts_key, 'congestion_same_cooldown', 1)
    return {tostring(size), breaker, '0'}
  end
  if event == 'queue_full' then
    if capacity and held >= capacity then good = math.min(max_size, held) end  -- confirmed
    capacity = math.max(1, math.min(max_size, held))
    size = math.min(size, capacity)
    out = {'capacity_at', tostring(now)}
  else
    size = math.max(1, size / 2)
  end
  redis.call('HINCRBY', counts_key, 'shrinks', 1)
  redis.call('HSET', wk, 'shrink_until', tostring(now + cooldown_s))
  if now + cooldown_s > cooldown_until then
    cooldown_until = now + cooldown_s
    hold = event == 'queue_full' and 'queue full' or 'rate limited'
  end
else
  failures = failures + 1
  redis.call('HINCRBY', counts_key, 'transient_failures', 1)
  if failures >= tonumber(ARGV[5]) and breaker ~= 'open' then
    trips = trips + 1
    local hold_s = math.min(tonumber(ARGV[7]), tonumber(ARGV[6]) * 2 ^ (trips - 1))
    breaker = 'open'
    redis.call('HINCRBY', counts_key, 'breaker_trips', 1)
    redis.call('HSET', wk, 'breaker_hold', tostring(hold_s))
    if now + hold_s > cooldown_until then
      cooldown_until = now + hold_s
      hold = 'breaker'
    end
  end
end
redis.call('HSET', wk, 'size', tostring(size), 'capacity', capacity and tostring(capacity) or '',
           'cooldown_until', tostring(cooldown_until), 'hold', hold, 'failures', failures,
           'trips', trips, 'breaker', breaker, 'good', good)
if #out > 0 then redis.call('HSET', wk, out[1], out[2]) end
return {tostring(size), breaker, '1'}
"""


@dataclass(frozen=True)
class Rules:
    """The settings the reactions read (the engine builds ``Window`` with its max only)."""

    cooldown_s: float = 5.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 5.0
    breaker_max_s: float = 120.0

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(cooldown_s=settings.queue_full_backoff_s,
                   breaker_failures=settings.breaker_failures,
                   breaker_cooldown_s=settings.breaker_cooldown_s,
                   breaker_max_s=settings.breaker_max_cooldown_s)
