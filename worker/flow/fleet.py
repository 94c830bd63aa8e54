"""The fleet: every upstream mjflow drives, each with its own client, profile and window,
and the rule that says which of them takes a queued step.

A queued step waits in a queue of its *route* (:mod:`worker.jobs.routes`). A member serves
a route when it is enabled, named by the route's pins (if any), and serves the route's
action and one of its modes. Among the members that serve a route, dispatch offers the
steps in order: with ``MJFLOW_ROUTING=priority`` by ``priority`` (lower first), then by
free slots times ``weight``; with ``cheapest`` by the price of the route's action first.
A paused member (out of credit, auth) has no room, so its routes go to the others; a
route pinned to it waits (:func:`waiting_reason` says why).
"""
from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from worker.errors import NotFound
from worker.flow.window import Window
from worker.jobs.model import DEFAULT_UPSTREAM
from worker.jobs.routes import Route, parse_route
from worker.keys import Keys
from worker.settings import Settings
from worker.upstream import Profile, UpstreamClient, get_profile
from worker.upstreams import UpstreamConfig


@dataclass
class Member:
    """One upstream of the fleet."""

    config: UpstreamConfig
    settings: Settings
    window: Window
    configured: bool = True
    profile: Profile = field(init=False)

    def __post_init__(self) -> None:
        self.profile = get_profile(self.config.profile)

    @property
    def name(self) -> str:
        return self.config.name

    @functools.cached_property
    def client(self) -> UpstreamClient:
        return UpstreamClient.from_settings(self.settings, self.config if self.configured
                                            else None)

    @property
    def poll_interval_s(self) -> float:
        """This upstream's own pace when callbacks do not come (profile or ``pollIntervalS``)."""
        return self.config.poll_interval_s or self.profile.poll_interval_s

    def serves(self, route: Route) -> bool:
        return self.config.serves(route)

    def cost_of(self, action: str) -> float:
        return self.config.cost_of(action)


class Fleet:
    """The members by name, in configuration order."""

    def __init__(self, r: redis.Redis, keys: Keys, settings: Settings) -> None:
        configured = bool(settings.fleet)   # else one member whose client says what is missing
        self.members: dict[str, Member] = {}
        for cfg in settings.upstream_configs:
            size = cfg.max_in_flight or get_profile(cfg.profile).max_in_flight
            self.members[cfg.name] = Member(cfg, settings, Window(r, keys, size, cfg.name),
                                            configured=configured)
        self.routing = settings.routing

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members.values())

    def __len__(self) -> int:
        return len(self.members)

    @property
    def single(self) -> bool:
        return len(self.members) == 1

    def get(self, name: str | None) -> Member:
        """The member called ``name`` (a step recorded before the fleet: the first one)."""
        name = name or DEFAULT_UPSTREAM
        member = self.members.get(name)
        if member is None and name == DEFAULT_UPSTREAM and self.single:
            member = next(iter(self.members.values()))
        if member is None:
            raise NotFound(f"no upstream {name!r} in the fleet (configured: "
                           f"{', '.join(self.members)})")
        return member

    def find(self, name: str | None) -> Member | None:
        try:
            return self.get(name)
        except NotFound:
            return None

    def profile_of(self, name: str | None) -> Profile:
        member = self.find(name)
        return member.profile if member else next(iter(self)).profile

    def serving(self, route: str | Route) -> list[Member]:
        """The members that can take steps of ``route`` (enabled or not paused: any state)."""
        parsed = parse_route(route) if isinstance(route, str) else route
        return [m for m in self if m.serves(parsed)]

    def candidates(self, route: str, room: dict[str, int]) -> list[Member]:
        """The members with room for ``route``'s steps, in the order they are offered them."""
        parsed = parse_route(route)
        action = parsed.action or "IMAGINE"
        members = [m for m in self.serving(parsed) if room.get(m.name, 0) > 0]

        def preference(m: Member) -> tuple[float, ...]:
            spread = -room[m.name] * m.config.weight
            if self.routing == "cheapest":
                return (m.cost_of(action), m.config.priority, spread)
            return (m.config.priority, spread)

        return sorted(members, key=preference)

    def room(self, now: float | None = None) -> dict[str, int]:
        """Free slots of each member now (0 while paused or cooling down)."""
        now = time.time() if now is None else now
        return {m.name: m.window.room(now) for m in self}

    def waiting_reason(self, route: str) -> str | None:
        """Why steps of ``route`` are not being dispatched, when no member can take them."""
        parsed = parse_route(route)
        serving = self.serving(parsed)
        if parsed.single and not serving:
            return f"waiting for upstream {parsed.single!r}: it is not in the fleet or disabled"
        if not serving:
            return "waiting: no upstream of the fleet serves this action and mode"
        paused = [(m.name, m.window.paused_reason()) for m in serving]
        if all(reason for _, reason in paused):
            return "; ".join(f"waiting for upstream {n!r}: {why}" for n, why in paused)
        return None
