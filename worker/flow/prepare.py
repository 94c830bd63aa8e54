"""What a root step needs from the upstream before its submit can be built:

- **ACTION** (a button of an upstream task mjflow did not create): fetch that task and
  find the button's customId (or, on a profile without buttons, the /change it stands
  for); a ``customId`` given verbatim needs no fetch;
- **IMAGINE** with data URLs in its prompt (``--sref data:...``, image prompts): upload
  them (upload-discord-images) and put the hosted URLs in their place.

Both happen before the submit is claimed, so a crash here is simply redone; the result is
saved on the step (its prompt, customId or change), so a resubmit never uploads again.
"""
from __future__ import annotations

from typing import Any

from worker.errors import MjflowError
from worker.flow.engine import Engine
from worker.flow.fleet import Member
from worker.jobs.chains import change_of, model_version, resolve_button
from worker.jobs.model import StepStatus
from worker.jobs.spec_images import prompt_data_urls, replace_references
from worker.jobs.store import Txn
from worker.upstream import Answer, Outcome, UpstreamAuthFailed, UpstreamOutOfCredit
from worker.upstream.models import TaskStatus

S = StepStatus
PREPARED = "prepared"


class Refused(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


def prepare_step(engine: Engine, job_id: str, step_id: str) -> Answer | None:
    """Do what the step needs first; ``None`` when it is ready to submit, else the answer
    that stopped it (retry later, or a refusal with its reason)."""
    step = engine.store.get_step(step_id)
    if (step is None or step.parent is not None or step.status != S.SUBMITTING
            or step.submit_started or step.options.get(PREPARED)):
        return None
    spec = engine.store.job_spec(job_id) or {}
    member = engine.member(step.upstream)
    changes: dict[str, Any] = {}
    try:
        if spec.get("action") == "ACTION":
            changes = _foreign_button(member, spec)
        elif spec.get("action") == "IMAGINE" and prompt_data_urls(spec.get("prompt")):
            changes = {"prompt": replace_references(
                spec["prompt"], lambda urls: _upload(engine, member, urls,
                                                     spec.get("accountFilter")))}
        else:
            return None
    except Refused as refused:
        return refused.answer

    def save(tx: Txn) -> None:
        current = tx.steps.get(step_id)
        if current is None or current.status != S.SUBMITTING or current.submit_started:
            return
        current.prompt = changes.get("prompt", current.prompt)
        current.custom_id = changes.get("custom_id", current.custom_id)
        if "change" in changes:
            current.options["change"] = changes["change"]
        current.options[PREPARED] = True
        tx.save(current)

    engine.store.mutate(job_id, save)
    return None


def _upload(engine: Engine, member: Member, data_urls: list[str], account_filter: Any
            ) -> list[str]:
    answer = member.client.upload_discord_images(data_urls, account_filter=account_filter)
    urls = answer.result if answer.outcome == Outcome.ACCEPTED else None
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        message = f"uploading the prompt's images failed: {answer.message}"
        outcome = answer.outcome if answer.outcome != Outcome.ACCEPTED else Outcome.REJECTED
        raise Refused(Answer(outcome, message, code=answer.code))
    engine.store.bump("uploads", "prompt_images", len(urls))
    return urls


def _foreign_button(member: Member, spec: dict[str, Any]) -> dict[str, Any]:
    """The customId (or /change) of ``spec.button`` on the upstream task ``spec.taskId``."""
    task_id, button = spec["taskId"], spec.get("button") or ""
    if spec.get("customId"):
        return {"custom_id": spec["customId"]}
    if member.profile.followups == "change":
        return {"change": list(change_of(button) or ())}
    try:
        task = member.client.fetch(task_id)
    except UpstreamAuthFailed as exc:
        raise Refused(Answer(Outcome.AUTH_FAILED, str(exc))) from None
    except UpstreamOutOfCredit as exc:
        raise Refused(Answer(Outcome.OUT_OF_CREDIT, str(exc))) from None
    except MjflowError as exc:
        raise Refused(Answer(Outcome.RETRY_LATER, f"reading upstream task {task_id}: {exc}")) \
            from None
    if task is None:
        raise Refused(Answer(Outcome.REJECTED, f"upstream task {task_id} not found"))
    if task.task_status is not TaskStatus.SUCCESS:
        raise Refused(Answer(Outcome.REJECTED, f"upstream task {task_id} is "
                             f"{task.status or 'not started'}, not SUCCESS: its buttons "
                             "cannot be clicked"))
    version = model_version(task.final_prompt or task.prompt, member.profile.default_version)
    custom_id, why = resolve_button(button, [b.model_dump() for b in task.buttons],
                                    version=version)
    if custom_id is None:
        raise Refused(Answer(Outcome.REJECTED, f"upstream task {task_id}: {why}"))
    return {"custom_id": custom_id}
