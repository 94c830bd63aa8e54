"""Which upstreams of the fleet may take a queued step: its *route*.

A route is a short string written without knowing the fleet, so that queueing stays a
plain transition; the fleet (:mod:`worker.flow.fleet`) reads it to find the upstreams
that serve it:

    at.{name}                        one upstream: a follow-up (task ids and customIds are
                                     valid only where the parent's task is), or a job
                                     pinned to one upstream
    any.{ACTION}.{MODES}.{BOT}       a root step of an unpinned job: any upstream that
                                     serves its action, one of its modes and its bot
    in.{a+b}.{ACTION}.{MODES}.{BOT}  the same, among the upstreams the job names

``MODES`` is ``FAST+RELAX`` (the job's modes) or ``-`` (the upstream's default); ``BOT``
is the botType or ``-``. A queue is ``{route}/{lane}``: the lanes keep batches fair.
"""
from __future__ import annotations

from dataclasses import dataclass

from worker.jobs.model import DEFAULT_UPSTREAM, Job, Step

ANY = "-"


@dataclass(frozen=True)
class Route:
    pins: tuple[str, ...] | None      # None: any upstream of the fleet
    action: str | None                # None: a follow-up or a pinned job (no class check)
    modes: tuple[str, ...] = ()
    bot: str | None = None

    @property
    def single(self) -> str | None:
        """The one upstream this route is pinned to, if it is."""
        return self.pins[0] if self.pins and len(self.pins) == 1 else None


def job_pins(spec: dict) -> list[str]:
    pins = spec.get("upstream")
    if not pins:
        return []
    return [pins] if isinstance(pins, str) else list(pins)


def job_modes(spec: dict) -> list[str]:
    modes = (spec.get("accountFilter") or {}).get("modes")
    return list(modes) if modes else ([spec["mode"]] if spec.get("mode") else [])


def route_of(job: Job, step: Step, parent: Step | None) -> str:
    """The route of ``step`` (a follow-up goes where its parent's task is)."""
    if parent is not None:
        return f"at.{parent.upstream or DEFAULT_UPSTREAM}"
    spec = job.spec
    pins = job_pins(spec)
    if len(pins) == 1:
        return f"at.{pins[0]}"
    klass = ".".join((spec.get("action", "IMAGINE"), "+".join(job_modes(spec)) or ANY,
                      spec.get("botType") or ANY))
    return f"in.{'+'.join(pins)}.{klass}" if pins else f"any.{klass}"


def parse_route(route: str) -> Route:
    kind, _, rest = route.partition(".")
    if kind == "at":
        return Route(pins=(rest,), action=None)
    parts = rest.split(".")
    pins = None
    if kind == "in":
        pins, parts = tuple(parts[0].split("+")), parts[1:]
    action, modes, bot = (parts + [ANY, ANY, ANY])[:3]
    return Route(pins=pins, action=action, modes=() if modes == ANY else tuple(modes.split("+")),
                 bot=None if bot == ANY else bot)


def queue_of(route: str, lane: str) -> str:
    return f"{route}/{lane}"


def split_queue(queue: str) -> tuple[str, str]:
    route, _, lane = queue.partition("/")
    return route, lane
