"""The callback inbox: what the receiver records in one round trip, and how the worker
takes it.

:meth:`Inbox.record` is one Lua script that checks the step (exists, this attempt, still
listening, this task), keeps a not-yet-adopted task id as evidence, moves the step's next
check, counts the callback and then either

* records progress (only upward, and then the next check it implies) when the step is
  already ``running`` and the callback only says it still is: no worker is involved; or
* does nothing more when the snapshot cannot move the step (a SUBMITTED after the
  submit's answer, a reordered copy); or
* for a step mjflow gave up on (failed by its deadline or a lost task, see
  :func:`worker.jobs.machine.give_up`), refuses everything as late except its own task's
  SUCCESS within the grace (``late_until``), which is kept as below: the reconcile stores
  it (confirmed first, as any terminal callback); or
* keeps the snapshot in ``{p}:inbox`` (coalesced: the most advanced one per step wins, so
  a late copy of IN_PROGRESS never hides a SUCCESS) and marks the step dirty
  (``{p}:inbox:dirty``, scored by when the tick sends the message again should it be
  lost); only the callback that made it dirty asks for a reconcile message (``"enqueue"``).

The worker clears the mark first (:meth:`begin`), reads the snapshot, reconciles it and
deletes it only if it is still the one it read (:meth:`ack`): a snapshot recorded
meanwhile stays, with a message of its own on its way; a worker that dies in between has
its message redelivered (acks late) and finds the snapshot still there.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from worker.jobs.model import RANK, StepStatus
from worker.keys import Keys
from worker.upstream.models import Task, TaskStatus

S = StepStatus
T = TaskStatus
#: How far a snapshot takes a step (the rank of the status it maps to), for coalescing.
_TARGET_RANK = {T.NOT_START: RANK[S.SUBMITTED], T.SUBMITTED: RANK[S.SUBMITTED],
                T.MODAL: RANK[S.MODAL], T.IN_PROGRESS: RANK[S.RUNNING],
                T.SUCCESS: RANK[S.SUCCEEDED], T.FAILURE: RANK[S.SUCCEEDED],
                T.CANCEL: RANK[S.SUCCEEDED]}

RECORD_LUA = """
local step_key, poll_key, seen_key, inbox_key, rank_key, dirty_key, counter_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]   -- KEYS[8]: to confirm
local step_id, generation, attempt, task_id, task_status = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local pct, progress, rank, snapshot = tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]), ARGV[9]
local now, next_check, seen_ttl = ARGV[10], ARGV[11], tonumber(ARGV[12])
local STEP_RANK = {@STEP_RANK@}
local h = redis.call('HMGET', step_key, 'status', 'task_id', 'generation', 'progress', 'misses',
                     'late_until')
local status, known = h[1], h[2] or ''
local function reject(reason)
  redis.call('HINCRBY', counter_key, 'rejected_' .. reason, 1)
  return reason
end
local function keep()       -- for the reconcile worker (coalesced: the most advanced wins)
  local old = tonumber(redis.call('HGET', rank_key, step_id) or '-1')
  if rank >= old then
    redis.call('HSET', inbox_key, step_id, snapshot)
    redis.call('HSET', rank_key, step_id, rank)
  end
  if ARGV[14] == '1' then redis.call('ZADD', KEYS[8], 'NX', now, step_id) end   -- to confirm
  if redis.call('ZADD', dirty_key, 'NX', ARGV[15], step_id) == 1 then return 'enqueue' end
  return 'coalesced'
end
if not status then return reject('not_found') end
local gen = h[3]
if gen == false or gen == '' then gen = '0' end
if gen ~= generation then return reject('not_found') end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' or status == 'skipped' then
  -- a step mjflow gave up on still takes its own task's SUCCESS within the grace
  local late_until = tonumber(h[6] or '')
  if status == 'failed' and late_until and late_until >= tonumber(now) and known ~= ''
     and task_id == known and task_status == 'SUCCESS' then
    redis.call('HINCRBY', counter_key, 'accepted', 1)
    redis.call('HINCRBY', counter_key, 'accepted_late', 1)
    return keep()
  end
  return reject('late')
end
if status ~= 'submitting' and status ~= 'submitted' and status ~= 'running'
   and status ~= 'modal' and status ~= 'storing' then
  return reject('not_submitted')
end
if (known ~= '' and task_id ~= known) or (known == '' and ARGV[13] ~= attempt) then
  return reject('wrong_task')
end
redis.call('HINCRBY', counter_key, 'accepted', 1)
if status == 'storing' then return 'noop' end        -- a late copy: the images are on their way
if known == '' then
  redis.call('SADD', seen_key, task_id)
  redis.call('EXPIRE', seen_key, seen_ttl)
end
if status == 'running' and task_status == 'IN_PROGRESS' and known ~= '' then
  local current = tonumber(string.match(h[4] or '', '(%d+)') or '0')
  if pct > current then     -- news: record it, and check when it says (a stale copy does not)
    redis.call('HSET', step_key, 'progress', progress, 'progress_at', now)
    redis.call('ZADD', poll_key, 'XX', next_check, step_id)
  end
  if h[5] and h[5] ~= '' and h[5] ~= '0' then redis.call('HSET', step_key, 'misses', '0') end
  redis.call('HINCRBY', counter_key, 'progress_recorded', 1)
  return 'progress'
end
redis.call('ZADD', poll_key, 'XX', next_check, step_id)
if known ~= '' and STEP_RANK[status] >= math.floor(rank / 1000) and task_status ~= 'MODAL' then
  return 'noop'             -- the step is already there (a SUBMITTED after the submit's answer)
end
return keep()
"""

RECORD_LUA = RECORD_LUA.replace("@STEP_RANK@", ", ".join(
    f"{st.value} = {RANK[st]}" for st in (S.SUBMITTING, S.SUBMITTED, S.MODAL, S.RUNNING)))

ACK_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# Claim up to ARGV[2] steps due by ARGV[1]; re-score them ARGV[3] later (a claimer that
# dies loses nothing: they come due again).
CLAIM_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member) end
return due
"""


def snapshot_rank(task: Task) -> int:
    """How far a snapshot takes its step: the target status's rank, then progress."""
    status = task.task_status
    base = _TARGET_RANK.get(status, RANK[S.SUBMITTED]) if status else RANK[S.SUBMITTED]
    return base * 1000 + task.progress_pct


class Inbox:
    def __init__(self, r: redis.Redis, keys: Keys, seen_ttl_s: int, redrive_s: float) -> None:
        self.r = r
        self.keys = keys
        self.seen_ttl_s = seen_ttl_s
        self.redrive_s = redrive_s
        self._record = r.register_script(RECORD_LUA)
        self._ack = r.register_script(ACK_LUA)
        self._claim = r.register_script(CLAIM_LUA)

    def record(self, step_id: str, generation: int, attempt: str, task: Task, raw: str,
               *, now: float, next_check: float, confirm: bool) -> str:
        """The receiver's one round trip. Returns ``progress``, ``enqueue``, ``coalesced``,
        ``noop`` (accepted) or the rejection: ``not_found``, ``late``, ``not_submitted``,
        ``wrong_task``. A terminal snapshot also joins ``{p}:confirm`` when ``confirm``:
        whichever worker confirms next takes every terminal callback gathered so far."""
        k = self.keys
        return self._record(
            keys=[k.step(step_id), k.poll(), k.step_seen(step_id), k.inbox(), k.inbox_rank(),
                  k.inbox_dirty(), k.counter("callbacks"), k.confirm()],
            args=[step_id, str(generation), attempt, task.id, task.status, task.progress_pct,
                  task.progress, snapshot_rank(task), raw, repr(now), repr(next_check),
                  self.seen_ttl_s, task.state or "", "1" if confirm and task.is_terminal else "0",
                  repr(now + self.redrive_s)],
        )

    def generation(self, step_id: str) -> int | None:
        """The step's attempt generation (None: no such step)."""
        h = self.r.hmget(self.keys.step(step_id), "status", "generation")
        return None if h[0] is None else int(h[1] or 0)

    def begin(self, step_id: str) -> str | None:
        """Clear the step's dirty mark and read its snapshot (None: nothing waits)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.keys.inbox_dirty(), step_id)
        pipe.hget(self.keys.inbox(), step_id)
        return pipe.execute()[1]

    def peek(self, step_ids: list[str]) -> list[str | None]:
        return self.r.hmget(self.keys.inbox(), step_ids) if step_ids else []

    def ack(self, step_id: str, raw: str) -> bool:
        """Drop the snapshot if it is still ``raw`` (a newer one stays for its message)."""
        return bool(self._ack(keys=[self.keys.inbox(), self.keys.inbox_rank()],
                              args=[step_id, raw]))

    def want_confirm(self, step_id: str, now: float) -> None:
        self.r.zadd(self.keys.confirm(), {step_id: now}, nx=True)

    def claim_confirms(self, now: float, limit: int, redrive_s: float) -> list[str]:
        return self._claim(keys=[self.keys.confirm()], args=[repr(now), limit,
                                                             repr(now + redrive_s)])

    def confirmed(self, step_ids: list[str], *, again: Sequence[str] = (), now: float = 0.0) -> None:
        """Done with ``step_ids``; ``again`` got a newer snapshot meanwhile: due now."""
        pipe = self.r.pipeline(transaction=False)
        if step_ids:
            pipe.zrem(self.keys.confirm(), *step_ids)
        if again:
            pipe.zadd(self.keys.confirm(), {sid: now for sid in again})
        pipe.execute()

    def pending(self) -> dict[str, Any]:
        """Sizes, for metrics and tests."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hlen(self.keys.inbox())
        pipe.zcard(self.keys.inbox_dirty())
        pipe.zcard(self.keys.confirm())
        inbox, dirty, confirm = pipe.execute()
        return {"snapshots": inbox, "dirty": dirty, "confirming": confirm}
