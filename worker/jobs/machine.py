"""The step state machine: every status change, with its index moves and side effects.

A move is only ever forward (see ``RANK``); terminal states never change, with one
exception (:func:`revive`). Each side effect hangs off exactly one transition and is
written in the same transaction; the work that must follow it is registered there as a
named effect (``tx.effect``), which the engine hands out once the transaction commits
(``worker.flow.engine`` wires each name once):

    submitting -> accepted      effect ``task_accepted`` (its price: worker.flow.budget)
    -> submitted/running        poll schedule + deadline (the queued allowance; the
                                reconcile that sees the task start moves it to the running
                                deadline, see ``worker.jobs.deadlines``)
    -> modal                    poll schedule + deadline; effect ``modal_pending`` (send the
                                modal's input) unless it was sent
    -> storing                  slot released, children queued; effect ``store_scheduled``
                                (store the images; ``{p}:storing`` is the safety net)
    storing -> succeeded        effect ``step_stored`` (the step's signed event)
    -> terminal                 slot released, indexes cleaned, descendants skipped; the
                                job's last step: effect ``job_finished`` (manifest + event)
    in flight -> failed         (:func:`give_up`: mjflow stopped waiting, its deadline
                                passed or the upstream lost the task) as any failure, and
                                the task is watched for a late SUCCESS (``{p}:late``)
    failed -> storing           (:func:`revive`, the one exception) a given-up step whose
                                own task succeeded within ``MJFLOW_LATE_SUCCESS_GRACE_S``:
                                the job reopens, the skipped follow-ups are started, a
                                ``step.late_succeeded`` timeline entry; effects
                                ``late_succeeded`` + ``store_scheduled``; the job then
                                finishes again (a new manifest and signed event)
"""
from __future__ import annotations

import time

from worker.errors import Conflict, NotFound, SpecError
from worker.jobs import deadlines
from worker.jobs.chains import change_of, model_version, offered, resolve_button
from worker.jobs.deadlines import Timing, duration
from worker.jobs.durations import observe_step_duration
from worker.jobs.model import DEFAULT_UPSTREAM, IN_FLIGHT, Job, JobStatus, Step, StepStatus
from worker.jobs.routes import queue_of, route_of
from worker.jobs.spec import FollowUp, normalize_then
from worker.jobs.store import Txn, new_child, ready_score

S = StepStatus


def move(tx: Txn, step: Step, to: StepStatus, *, now: float | None = None,
         reason: str | None = None, poll_in_s: float = 30.0,
         timing: Timing | None = None) -> bool:
    """Move ``step`` to ``to`` if that is forward. Returns True if it moved. ``timing``
    gives the deadline of a step entering flight (its queued allowance)."""
    now = time.time() if now is None else now
    frm = step.status
    if frm.terminal or to.rank <= frm.rank:
        return False
    k = tx.keys
    p = tx.pipe
    step.status = to
    step.times.setdefault(to.value, now)
    tx.save(step)
    if frm == S.QUEUED:
        p.zrem(k.ready(_queue(tx, step)), step.id)
    if to == S.QUEUED:
        _enqueue(tx, step)
    if frm == S.SUBMITTING and not to.terminal:
        tx.effect("task_accepted", step.id)      # the upstream holds a task now: its price
    if to in (S.SUBMITTED, S.RUNNING, S.MODAL):
        p.zrem(k.pending_submit(), step.id)
        if frm not in (S.SUBMITTED, S.RUNNING, S.MODAL):
            p.zadd(k.poll(), {step.id: now + poll_in_s})
            deadlines.arm(tx, step, timing or Timing(), now)
    if to == S.MODAL:
        request_modal(tx, step)
    if to == S.STORING or (to.terminal and frm in IN_FLIGHT):
        started = step.times.get("submitting") or step.times.get("submitted")
        if started:
            observe_step_duration(tx.pipe, tx.keys, step.action, now - started)
    if to == S.STORING:
        _leave_upstream(tx, step)
        tx.effect("slot_released")
        _enter_storing(tx, step, now)
    if to.terminal:
        if frm in IN_FLIGHT:
            _leave_upstream(tx, step)
            tx.effect("slot_released")
        p.zrem(k.storing(), step.id)
        step.fail_reason = reason if to != S.SUCCEEDED else None
        if frm == S.STORING and to == S.SUCCEEDED:
            tx.effect("step_stored", step.id)
        tx.job.open_steps -= 1
        tx.job_dirty = True
        child_fate = S.CANCELLED if to == S.CANCELLED else S.SKIPPED
        for child_id in step.children:
            child = tx.steps[child_id]
            if child.status == S.WAITING:
                why = f"parent step {step.label} {to.value}"
                move(tx, child, child_fate, now=now, reason=why)
        if tx.job.open_steps <= 0 and not tx.job.status.finished:
            _finish_job(tx, now)
    return True


def _enter_storing(tx: Txn, step: Step, now: float) -> None:
    # the reconcile that made this move hands the store out at once; the schedule is the
    # safety net that re-drives it if that hand-off is lost
    tx.pipe.zadd(tx.keys.storing(), {step.id: now + tx.store.redrive_s})
    tx.effect("store_scheduled", step.id)
    _start_children(tx, step, now)


def give_up(tx: Txn, step: Step, reason: str, timing: Timing, now: float) -> bool:
    """mjflow stops waiting for an in-flight step (its deadline passed, or the upstream no
    longer knows its task): it fails with ``reason`` as any failure does (slot released,
    children skipped, the job may finish). Its task may still finish upstream, billed: for
    ``late_grace_s`` it is checked every ``late_poll_s`` (``{p}:late``) and its own
    callbacks are still taken, so that a late SUCCESS is stored (:func:`revive`)."""
    if step.status not in IN_FLIGHT or not move(tx, step, S.FAILED, now=now, reason=reason):
        return False
    if step.task_id and timing.late_grace_s > 0:
        step.gave_up = reason
        step.late_until = now + timing.late_grace_s
        step.times["gave_up"] = now
        tx.save(step)
        tx.pipe.zadd(tx.keys.late(), {step.id: now + min(timing.late_poll_s,
                                                         timing.late_grace_s)})
    return True


def revivable(step: Step, now: float) -> bool:
    """A step mjflow gave up on (not one the upstream failed) whose grace is not over."""
    return (step.status == S.FAILED and bool(step.gave_up) and step.late_until is not None
            and now <= step.late_until)


def revive(tx: Txn, step: Step, now: float) -> bool:
    """The one exception to "terminal states never change": a step :func:`give_up` failed
    (never one the upstream failed) whose own task succeeded within the grace goes
    FAILED -> STORING. Its images are stored as for any success, the follow-ups its
    failure skipped are reopened and started (as :func:`retry_failed` reopens them), a
    finished job is open again and finishes again with its new outcome (a new manifest
    and signed event), and the job's timeline says ``step.late_succeeded``. The caller
    has already set the task's result on the step (buttons, image, summary)."""
    if not revivable(step, now):
        return False
    job = tx.job
    late_by = now - step.times.get("gave_up", now)
    step.status = S.STORING
    step.fail_reason = None
    step.late_until = None
    step.times["late_succeeded"] = now
    step.times.setdefault("storing", now)
    tx.save(step)
    tx.pipe.zrem(tx.keys.late(), step.id)
    reopened = 1 + sum(_reopen_skipped(tx, tx.steps[c], now) for c in step.children)
    if job.status.finished:
        job.status = JobStatus.RUNNING
        job.finished_at = None
        tx.pipe.sadd(tx.keys.jobs_live(), job.id)
        tx.pipe.zrem(tx.keys.retention(), job.id)
        tx.pipe.zrem(tx.keys.finishing(), job.id)
    job.open_steps += reopened
    tx.job_dirty = True
    follow = f"; {reopened - 1} skipped follow-up step(s) reopened" if reopened > 1 else ""
    tx.note("step.late_succeeded",
            f"step {step.label} ({step.id}): task {step.task_id} succeeded upstream "
            f"{duration(late_by)} after mjflow gave up on it ({step.gave_up}); its result is "
            f"stored{follow}", now)
    tx.effect("late_succeeded", step.id)
    _enter_storing(tx, step, now)
    return True


def _reopen_skipped(tx: Txn, step: Step, now: float) -> int:
    """A follow-up skipped for its parent's failure waits again (with its own skipped
    descendants); returns how many steps were reopened."""
    if step.status != S.SKIPPED:
        return 0
    step.status = S.WAITING
    step.fail_reason = None
    step.times["reopened"] = now
    tx.save(step)
    return 1 + sum(_reopen_skipped(tx, tx.steps[c], now) for c in step.children)


def request_modal(tx: Txn, step: Step) -> bool:
    """A MODAL step whose input has not been sent (or must be sent again) asks for it."""
    if step.status != S.MODAL or "modal_sent" in step.times:
        return False
    tx.effect("modal_pending", step.id)
    return True


def requeue(tx: Txn, step: Step, *, now: float | None = None) -> bool:
    """The one backward move: a submit that the upstream refused for now goes back to the
    queue (its slot is released); nothing was created upstream."""
    now = time.time() if now is None else now
    if step.status != S.SUBMITTING:
        return False
    _leave_upstream(tx, step)
    tx.effect("slot_released")
    step.status = S.QUEUED
    step.submit_started = None
    tx.save(step)
    _enqueue(tx, step)
    return True


def _queue(tx: Txn, step: Step) -> str:
    """The ready queue of a queued step: its route (which upstreams may take it) and lane."""
    parent = tx.steps.get(step.parent) if step.parent else None
    return queue_of(route_of(tx.job, step, parent), tx.job.lane)


def _enqueue(tx: Txn, step: Step) -> None:
    queue = _queue(tx, step)
    tx.pipe.zadd(tx.keys.ready(queue), {step.id: ready_score(tx.job.priority, tx.job.created_at)})
    tx.pipe.zadd(tx.keys.lanes(), {queue: 0}, nx=True)


def _leave_upstream(tx: Txn, step: Step) -> None:
    k = tx.keys
    for key in (k.slots(step.upstream or DEFAULT_UPSTREAM), k.poll(), k.deadline(),
                k.pending_submit()):
        tx.pipe.zrem(key, step.id)


def _start_children(tx: Txn, step: Step, now: float) -> None:
    """The parent's upstream task succeeded: queue each child with its customId (or, on an
    upstream without buttons, the /change it stands for)."""
    for child_id in step.children:
        child = tx.steps[child_id]
        if child.status != S.WAITING:
            continue
        if tx.job.cancel_requested:
            move(tx, child, S.CANCELLED, now=now, reason="job cancelled")
            continue
        why = follow_up_target(tx, step, child)
        if why:
            move(tx, child, S.FAILED, now=now, reason=why)
            continue
        move(tx, child, S.QUEUED, now=now)
        tx.effect("child_queued")


def follow_up_target(tx: Txn, parent: Step, child: Step) -> str:
    """Point ``child`` at its parent's finished task: the button's customId, the /change
    of a profile without buttons, or the VIDEO task an extend continues. Returns why it
    cannot be done ("" when it can)."""
    child.parent_task_id = parent.task_id
    tx.save(child)
    if child.action == "EXTEND":
        return ""
    profile = tx.store.profile_of(parent.upstream)
    if profile.followups == "change":
        change = change_of(child.label)
        if change is None:
            return (f"'{child.label}' is not possible without buttons: only U1–U4, V1–V4 "
                    "and reroll (🔄) through /mj/submit/change")
        child.options["change"] = list(change)
        return ""
    summary = parent.task or {}
    version = model_version(summary.get("finalPrompt") or summary.get("prompt"),
                            profile.default_version)
    custom_id, why = resolve_button(child.label, parent.buttons, version=version)
    child.custom_id = custom_id
    return why


def _finish_job(tx: Txn, now: float) -> None:
    job = tx.job
    statuses = [s.status for s in tx.steps.values()]
    root = next(s for s in tx.steps.values() if s.parent is None)
    if all(st == S.SUCCEEDED for st in statuses):
        job.status = JobStatus.SUCCEEDED
    elif job.cancel_requested:
        job.status = JobStatus.CANCELLED
    elif root.status != S.SUCCEEDED:
        job.status = JobStatus.FAILED
    else:
        job.status = JobStatus.PARTIAL
    job.finished_at = now
    tx.job_dirty = True
    k = tx.keys
    tx.pipe.srem(k.jobs_live(), job.id)
    tx.pipe.zadd(k.finishing(), {job.id: now + tx.store.redrive_s})   # safety net
    tx.pipe.zadd(k.retention(), {job.id: now + tx.store.retention_s})
    tx.effect("job_finished")


ABANDONED_MODAL = ("cancelled: abandoned at the modal dialog (never confirmed upstream, so "
                   "nothing runs there)")


def cancel(tx: Txn, now: float | None = None) -> int:
    """Cancel what has not started and abandon MODAL tasks (never confirmed, nothing runs
    upstream); in-flight steps start no children, and each with a task id registers
    ``cancel_upstream`` (cancelled there where the profile can, else left to finish)."""
    now = time.time() if now is None else now
    if tx.job.status.finished:
        return 0
    tx.job.cancel_requested = True
    tx.job_dirty = True
    count = 0
    for step in tx.steps.values():
        if step.status in (S.WAITING, S.QUEUED):
            count += move(tx, step, S.CANCELLED, now=now, reason="cancelled by request")
        elif step.status == S.MODAL:
            count += move(tx, step, S.CANCELLED, now=now, reason=ABANDONED_MODAL)
        elif step.status in (S.SUBMITTED, S.RUNNING) and step.task_id:
            tx.effect("cancel_upstream", step.id)
    return count


def retry_blocker(job: Job, step: Step, parent: Step | None) -> str | None:
    """Why a retry cannot run this failed step again, or None when it can: the one rule
    :func:`retry_failed` applies and views show (``retryable``, ``retryReason``)."""
    if step.status != S.FAILED:
        return "only failed steps are retried"
    if not job.status.finished:
        return "the job has not finished yet; its failed steps can be retried once it has"
    if parent is not None and parent.status != S.SUCCEEDED:
        return f"its parent step {parent.label} did not succeed"
    if parent is not None and not step.custom_id:
        return (f"button '{step.label}' was never offered by {parent.label} (offered: "
                f"{offered(parent.buttons)}); a retry cannot make it appear")
    return None


def retry_failed(tx: Txn, now: float | None = None) -> int:
    """Give failed steps (and the descendants they skipped) another run. Returns how many
    steps were reopened. Only a finished job can be retried."""
    now = time.time() if now is None else now
    job = tx.job
    if not job.status.finished:
        return 0
    reopened = 0

    def reopen(step: Step, to: StepStatus) -> None:
        nonlocal reopened
        step.status = to
        step.fail_reason = None
        step.task_id = None
        step.submit_started = None
        step.progress = ""
        step.misses = 0
        step.gave_up = None             # a given-up task's late result is no longer wanted
        step.late_until = None
        tx.pipe.zrem(tx.keys.late(), step.id)
        step.generation += 1
        step.times = {"created": step.times.get("created", now), "retried": now}
        tx.save(step)
        reopened += 1
        if to == S.QUEUED:
            _enqueue(tx, step)
        for child_id in step.children:
            child = tx.steps[child_id]
            if child.status in (S.SKIPPED, S.FAILED, S.CANCELLED):
                reopen(child, S.WAITING)

    for step in list(tx.steps.values()):
        parent = tx.steps.get(step.parent) if step.parent else None
        if step.status == S.FAILED and retry_blocker(job, step, parent) is None:
            reopen(step, S.QUEUED)
    if reopened:
        job.status = JobStatus.QUEUED
        job.finished_at = None
        job.cancel_requested = False
        job.open_steps += reopened
        tx.job_dirty = True
        tx.pipe.sadd(tx.keys.jobs_live(), job.id)
        tx.pipe.zrem(tx.keys.retention(), job.id)
        tx.effect("job_retried")
    return reopened


def find_step(tx: Txn, ref: str) -> Step:
    """A step of the job by id, by label (when only one step has it), or ``root``."""
    if ref in tx.steps:
        return tx.steps[ref]
    if ref.strip().lower() == "root":
        return next(s for s in tx.steps.values() if s.parent is None)
    named = [s for s in tx.steps.values() if s.label.casefold() == ref.strip().casefold()]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(s.id for s in named)
        raise Conflict(f"{len(named)} steps are labelled {ref!r} ({ids}): name one by its id")
    raise NotFound(f"job {tx.job.id} has no step {ref!r}")


def add_follow_ups(tx: Txn, parent_ref: str, items: list[FollowUp],
                   now: float | None = None) -> list[Step]:
    """Act later: follow-ups under a step of an existing job (finished or not). Under a
    succeeded step they are queued at once (or failed, when its task lacks the button);
    under a step still running they wait for it. A finished job is open again until they
    end, and then finishes again (a new manifest and event)."""
    now = time.time() if now is None else now
    parent = find_step(tx, parent_ref)
    if parent.status in (S.FAILED, S.CANCELLED, S.SKIPPED):
        raise Conflict(f"step {parent.label} ({parent.id}) {parent.status.value}: it has no "
                       "result to act on")
    if parent.action == "UPLOAD":
        raise Conflict("an UPLOAD step has no buttons to act on")
    if parent.status in (S.STORING, S.SUCCEEDED):
        _check_offered(tx, parent, items)
    job = tx.job
    added: list[Step] = []

    def grow(under: Step, follow_ups: list[FollowUp]) -> None:
        for item in follow_ups:
            child = new_child(under, item, len(tx.steps), now, seed=bool(job.spec.get("seed")))
            tx.save(under)
            tx.add(child)
            added.append(child)
            grow(child, normalize_then(item.then))

    grow(parent, items)
    if job.status.finished:
        job.status = JobStatus.RUNNING
        job.finished_at = None
        job.cancel_requested = False
        tx.pipe.sadd(tx.keys.jobs_live(), job.id)
        tx.pipe.zrem(tx.keys.retention(), job.id)
        tx.pipe.zrem(tx.keys.finishing(), job.id)
    job.open_steps += len(added)
    tx.job_dirty = True
    tx.effect("steps_added")
    if parent.status in (S.STORING, S.SUCCEEDED):
        _start_children(tx, parent, now)
    return added


def _check_offered(tx: Txn, parent: Step, items: list[FollowUp]) -> None:
    """Refuse (nothing created) a follow-up its finished parent cannot take."""
    errors = []
    for i, item in enumerate(items):
        probe = Step(id="probe", job=tx.job.id, index=0, label=item.button,
                     action="EXTEND" if item.button.strip().lower() == "extend" else "ACTION",
                     status=S.WAITING, parent=parent.id)
        if probe.action == "EXTEND":
            why = "" if (parent.task or {}).get("video") else \
                f"'extend' follows a video; step {parent.label} made none"
        else:
            why = follow_up_target(_Probe(tx), parent, probe)
        if why:
            errors.append({"path": f"then[{i}].button", "message": why})
    if errors:
        raise SpecError(errors)


class _Probe:
    """A transaction stand-in that records nothing (for checking a button)."""

    def __init__(self, tx: Txn) -> None:
        self.store = tx.store

    def save(self, step: Step) -> None:
        pass
