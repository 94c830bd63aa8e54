"""Submitting a step upstream, and what each answer does to it.

A submit is never blindly repeated: the attempt is recorded (``submit_started``) before
the request leaves, so a second run of the same task (redelivery, a killed worker) finds
it and leaves the decision to the pending-submit sweep (callback with our ``state``, the
upstream's task list, then a resubmit after the grace period, counted).
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace

from worker.flow import budget, pacing
from worker.flow.engine import Engine
from worker.flow.fleet import Member
from worker.flow.prepare import prepare_step
from worker.flow.window_rules import Rules
from worker.jobs import machine
from worker.jobs.model import Job, Step, StepStatus
from worker.jobs.store import Txn
from worker.upstream import Answer, Outcome, Profile
from worker.upstream.submits import (
    Request,
    action_request,
    change_request,
    extend_request,
    modal_request,
    root_request,
)

log = logging.getLogger("mjflow.submit")
S = StepStatus
PAUSE_REASONS = {Outcome.OUT_OF_CREDIT: "out of credit", Outcome.AUTH_FAILED: "auth failed"}


def build_request(job: Job, step: Step, profile: Profile | None = None) -> Request:
    """The upstream endpoint and body for this step's next submit (``upstream.submits``
    builds every body; state and notifyHook are added when it is sent)."""
    options = step.options
    if step.status == S.MODAL:
        return modal_request(step.task_id or "", prompt=step.prompt, mask_base64=step.mask)
    action = job.spec["action"]
    if step.parent is None and action != "ACTION":
        spec = job.spec if not step.prompt else {**job.spec, "prompt": step.prompt}
        field = profile.upload_filter_field if profile else "accountFilter"
        return root_request(action, spec, upload_filter_field=field)
    if step.action == "EXTEND":
        return extend_request(step.parent_task_id or "", index=int(options.get("index", 0)),
                              prompt=step.prompt or job.spec.get("prompt") or "",
                              motion=options.get("motion"))
    if options.get("change"):
        change_action, index = options["change"]
        return change_request(step.parent_task_id or "", change_action, index)
    return action_request(step.parent_task_id or "", step.custom_id or "",
                          enable_remix=step.enable_remix,
                          choose_same_channel=options.get("chooseSameChannel"))


def _begin(engine: Engine, job_id: str, step_id: str, now: float) -> tuple[Job, Step] | None:
    """Claim the right to send this step's request, once."""

    def fn(tx: Txn) -> tuple[Job, Step] | None:
        step = tx.steps.get(step_id)
        if step is None:
            return None
        modal_pending = step.status == S.MODAL and "modal_sent" not in step.times
        if not modal_pending and (step.status != S.SUBMITTING or step.submit_started):
            return None
        if modal_pending:
            step.times["modal_sent"] = now
        else:
            step.submit_started = now
            step.attempt += 1
            step.times.setdefault("submitting", now)
        tx.save(step)
        return tx.job, step

    return engine.store.mutate(job_id, fn)


def submit_step(engine: Engine, step_id: str, now: float | None = None) -> str:
    """Send the step's submit (or its modal input) and apply the answer."""
    now = time.time() if now is None else now
    job_id = engine.store.job_of(step_id)
    if job_id is None:
        return "unknown-step"
    refused = prepare_step(engine, job_id, step_id)
    if refused is not None:
        return _after_prepare(engine, job_id, step_id, refused)
    claimed = _begin(engine, job_id, step_id, now)
    if claimed is None:
        return "not-mine"
    job, step = claimed
    member = engine.member(step.upstream)
    price = member.cost_of(budget.cost_key(job.spec["action"], step.parent, step.custom_id))
    over = budget.blocker(engine.store, job_id, job.spec, job.batch, price,
                          engine.settings.budget_per_day) if step.status != S.MODAL else None
    if over is not None:
        engine.store.mutate(job_id, lambda tx: machine.move(tx, tx.steps[step_id], S.SKIPPED,
                                                            reason=over))
        return "skipped"
    if step.status == S.MODAL and not (step.prompt or step.mask):
        why = (f"'{step.label}' opens a modal dialog upstream and needs input: "
               "give it a 'prompt' (and a 'mask' for Vary (Region))")
        _fail(engine, job_id, step_id, why)
        return "failed"
    path, body = build_request(job, step, member.profile)
    modes = (job.spec.get("accountFilter") or {}).get("modes") or (
        [job.spec["mode"]] if job.spec.get("mode") else None)
    opening = path not in ("modal", "upload-discord-images")   # a modal continues a task
    hook = engine.hook_url(member, step.id, step.generation) if opening else None
    answer = member.client.submit(path, body, state=step.upstream_state if opening else None,
                                  notify_hook=hook, modes=modes)
    member.window.record_answer({
        "at": time.time(), "step": step_id, "job": job_id, "path": path,
        "outcome": answer.outcome.value, "code": answer.code, "http": answer.http_status,
        "message": answer.message,
        "pressure": answer.pressure.value if answer.pressure else None,
    })
    return apply_answer(engine, job_id, step_id, path, answer, member)


def apply_answer(engine: Engine, job_id: str, step_id: str, path: str, answer: Answer,
                 member: Member | None = None) -> str:
    """What the answer of ``member`` (default: the step's upstream) does to the step."""
    if member is None:
        brief = engine.store.brief(step_id)
        member = engine.member(brief.upstream if brief else None)
    o = answer.outcome
    if o == Outcome.ACCEPTED and path == "upload-discord-images":
        return _uploaded(engine, job_id, step_id, answer)
    if o in (Outcome.ACCEPTED, Outcome.NEEDS_MODAL):
        return _accepted(engine, member, job_id, step_id, path, answer)
    if o == Outcome.RETRY_LATER:   # congestion shrinks the window; a failure counts
        member.window.react(answer, Rules.of(engine.settings))
        if _requeue(engine, job_id, step_id, path, why=answer.message):
            return "failed"
        return "retry-later"
    if o in (Outcome.OUT_OF_CREDIT, Outcome.AUTH_FAILED):
        _requeue(engine, job_id, step_id, path)
        why, detail = PAUSE_REASONS[o], answer.message or ""
        reason = detail if detail.startswith(why) else f"{why} ({detail})" if detail else why
        member.window.pause(reason)
        others = "another upstream of the fleet takes it if one serves it, else it" \
            if not engine.fleet.single else "it"
        engine.store.note(job_id, "dispatch_paused",
                          f"upstream {member.name!r} paused ({reason}); {others} waits in the "
                          f"queue until `mjflow resume {member.name}`")
        return "paused"
    if o == Outcome.OUTCOME_UNKNOWN:
        member.window.react(answer, Rules.of(engine.settings))   # counts toward the breaker
        engine.store.bump("submits", "outcome_unknown")
        engine.store.note(job_id, "submit_answer_lost", f"step {step_id}: {answer.message}")
        log.warning("submit of step %s: answer lost (%s); waiting for its state", step_id,
                    answer.message)
        return "unknown"
    _fail(engine, job_id, step_id, answer.message or f"upstream refused the submit ({o.value})")
    return "failed"


def _accepted(engine: Engine, member: Member, job_id: str, step_id: str, path: str,
              answer: Answer) -> str:
    if not answer.task_id:
        _fail(engine, job_id, step_id, f"upstream accepted but returned no task id: {answer.message}")
        return "failed"
    timing = engine.timing(member)
    needs_modal = answer.outcome == Outcome.NEEDS_MODAL

    def fn(tx: Txn) -> None:
        step = tx.steps[step_id]
        timing_ = engine.timing(member, step.custom_id) if step.custom_id else timing
        if step.task_id and step.task_id != answer.task_id and path != "modal":
            log.warning("step %s: answer id %s differs from adopted %s", step_id,
                        answer.task_id, step.task_id)
            return
        if not step.task_id:
            step.task_id = answer.task_id
            tx.pipe.set(tx.keys.task(answer.task_id), step.id, ex=tx.store.retention_s)
            tx.save(step)
        target = S.MODAL if needs_modal else S.SUBMITTED
        action = pacing.guess_action(step.custom_id, tx.job.spec.get("action"))
        first_in = pacing.first_check_at(engine, member, action,
                                          queued_ahead=answer.queued_ahead) - time.time()
        if answer.queued_ahead is not None:
            step.queue_ahead = answer.queued_ahead      # its queued allowance grows with it
            tx.save(step)
        # a move to MODAL registers ``modal_pending``: the engine sends the input next
        machine.move(tx, step, target, poll_in_s=first_in, timing=timing_)

    engine.store.mutate(job_id, fn)
    member.window.react(answer, Rules.of(engine.settings))     # after the move: it is held
    return "modal" if needs_modal else "accepted"


def _requeue(engine: Engine, job_id: str, step_id: str, path: str,
             why: str | None = None) -> bool:
    """Back to the queue (nothing was created upstream). A "retry later" answer (``why``)
    counts; past ``MJFLOW_MAX_REQUEUES`` of them the step fails instead, with the last
    answer as its reason. Returns True when it failed."""
    limit = engine.settings.max_requeues

    def fn(tx: Txn) -> bool:
        step = tx.steps[step_id]
        if path == "modal" and step.status == S.MODAL:
            step.times.pop("modal_sent", None)   # the poller's MODAL snapshot resends it
            tx.save(step)
            return False
        if why is not None:
            step.requeues += 1
            tx.save(step)
            if step.requeues >= limit:
                return machine.move(tx, step, S.FAILED, reason=(
                    f"upstream kept answering 'retry later' ({step.requeues} times, "
                    f"MJFLOW_MAX_REQUEUES={limit}); last: {why}"))
        machine.requeue(tx, step)
        return False

    return bool(engine.store.mutate(job_id, fn))


def _uploaded(engine: Engine, job_id: str, step_id: str, answer: Answer) -> str:
    """upload-discord-images answered its hosted URLs: the UPLOAD step is done."""
    urls = [u for u in (answer.result or []) if isinstance(u, str) and u]
    if not urls:
        _fail(engine, job_id, step_id, f"upload answered no URLs: {answer.message}")
        return "failed"

    def fn(tx: Txn) -> None:
        step = tx.steps[step_id]
        step.task = {"action": "UPLOAD", "uploads": urls}
        step.progress = "100%"
        machine.move(tx, step, S.SUCCEEDED)

    engine.store.mutate(job_id, fn)
    return "uploaded"


def _after_prepare(engine: Engine, job_id: str, step_id: str, refused: Answer) -> str:
    """What a failed preparation (uploading a prompt's images, reading a foreign task's
    buttons) does: retry later (or pause), or fail the step with the reason."""
    brief = engine.store.brief(step_id)
    if brief is None or brief.status != S.SUBMITTING or brief.submit_started:
        return "not-mine"
    if refused.outcome == Outcome.OUTCOME_UNKNOWN:      # nothing billed: safe to redo
        refused = replace(refused, outcome=Outcome.RETRY_LATER)
    if refused.outcome in (Outcome.RETRY_LATER, Outcome.OUT_OF_CREDIT, Outcome.AUTH_FAILED):
        return apply_answer(engine, job_id, step_id, "prepare", refused)
    _fail(engine, job_id, step_id, refused.message)
    return "failed"


def _fail(engine: Engine, job_id: str, step_id: str, reason: str) -> None:
    engine.store.mutate(job_id, lambda tx: machine.move(tx, tx.steps[step_id], S.FAILED,
                                                        reason=reason))
