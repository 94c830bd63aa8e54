"""The fleet's configuration: which upstreams mjflow drives, read once at start.

``MJFLOW_UPSTREAMS`` (a JSON list) or ``MJFLOW_UPSTREAMS_FILE`` (a JSON or YAML file of the
same list) names each upstream; without them the single-upstream settings
(``MJFLOW_UPSTREAM_URL``, ``_KEY``, ``_PROFILE``, ``_MODE``, ``MJFLOW_MAX_IN_FLIGHT``) are the
shorthand for a one-upstream fleet named ``default``. A malformed list fails at start,
naming the item's index and field; keys never appear in an error or a ``repr``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.jobs.fit import Problem, profile_problems
from worker.jobs.model import DEFAULT_UPSTREAM
from worker.jobs.routes import Route
from worker.jobs.spec import UPSTREAM_NAME_RE, JobSpec, Mode, RootAction
from worker.upstream.profiles import MODES, get_profile

ProfileName = Literal["midjourney-proxy", "trueai", "newapi", "uniapi", "dataeyes", "novicezk"]
#: the root actions a step can ask an upstream for (``JobSpec.action``)
ROOT_ACTIONS: tuple[str, ...] = get_args(RootAction)
#: what a profile cannot do at all (the rest is checked per job by ``worker.jobs.fit``)
PROFILE_LACKS = {"dataeyes": ("BLEND", "DESCRIBE", "SHORTEN")}
MAX_UPSTREAMS = 64


class UpstreamConfig(BaseModel):
    """One upstream of the fleet (field names as in ``MJFLOW_UPSTREAMS``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str
    url: str
    key: str = Field(default="", repr=False)
    profile: ProfileName = "midjourney-proxy"
    mode: Mode | None = None
    max_in_flight: int | None = Field(default=None, alias="maxInFlight", ge=1, le=1000)
    modes: tuple[Mode, ...] | None = None
    actions: tuple[str, ...] | None = None
    priority: int = Field(default=1, ge=0, le=1000)
    weight: float = Field(default=1.0, gt=0, le=1000)
    enabled: bool = True
    costs: dict[str, float] = Field(default_factory=dict)
    refunds_failures: bool = Field(default=False, alias="refundsFailures")
    poll_interval_s: float | None = Field(default=None, alias="pollIntervalS", gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not UPSTREAM_NAME_RE.match(value):
            raise ValueError("must be 1-32 of a-z, 0-9 and '-'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        bad = [a for a in value if a not in ROOT_ACTIONS]
        if bad:
            raise ValueError(f"unknown action {bad[0]!r} (known: {', '.join(ROOT_ACTIONS)})")
        return tuple(dict.fromkeys(value))

    @field_validator("costs")
    @classmethod
    def _costs(cls, value: dict[str, float]) -> dict[str, float]:
        for action, price in value.items():
            if action != "*" and action not in ROOT_ACTIONS + ("UPSCALE",):
                raise ValueError(f"unknown action {action!r} in costs (a root action, UPSCALE "
                                 "for upscale buttons, ACTION for other buttons, or '*')")
            if price < 0:
                raise ValueError(f"cost of {action} is negative")
        return value

    @property
    def served_modes(self) -> frozenset[str]:
        return frozenset(self.modes) if self.modes else MODES

    @property
    def served_actions(self) -> frozenset[str]:
        if self.actions is not None:
            return frozenset(self.actions)
        return frozenset(ROOT_ACTIONS) - frozenset(PROFILE_LACKS.get(self.profile, ()))

    def serves(self, route: Route) -> bool:
        """Whether steps of ``route`` may run here (enabled, pinned here or not pinned,
        and serving the route's action and one of its modes)."""
        if not self.enabled or (route.pins is not None and self.name not in route.pins):
            return False
        if route.action is None:
            return True
        if route.action not in self.served_actions:
            return False
        return not route.modes or bool(set(route.modes) & self.served_modes)

    def cost_of(self, action: str) -> float:
        """The price of one accepted task of ``action`` (0 when no cost is configured)."""
        return float(self.costs.get(action, self.costs.get("*", 0.0)))

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


class FleetConfigError(ValueError):
    """A malformed fleet configuration (the message names the item and field)."""


def _items(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise FleetConfigError(f"{where}: must be a non-empty list of upstreams")
    if len(raw) > MAX_UPSTREAMS:
        raise FleetConfigError(f"{where}: at most {MAX_UPSTREAMS} upstreams")
    return raw


def parse_fleet(raw: Any, where: str = "MJFLOW_UPSTREAMS") -> tuple[UpstreamConfig, ...]:
    """Validate a decoded list of upstreams; errors name ``where[index].field``."""
    out: list[UpstreamConfig] = []
    for i, item in enumerate(_items(raw, where)):
        if not isinstance(item, dict):
            raise FleetConfigError(f"{where}[{i}]: must be an object")
        try:
            cfg = UpstreamConfig.model_validate(item)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"]) or "item"
            msg = err["msg"].removeprefix("Value error, ")
            raise FleetConfigError(f"{where}[{i}].{field}: {msg}") from None
        if any(c.name == cfg.name for c in out):
            raise FleetConfigError(f"{where}[{i}].name: {cfg.name!r} is used twice")
        get_profile(cfg.profile)
        out.append(cfg)
    return tuple(out)


def load_fleet_text(text: str, where: str, *, yaml_ok: bool) -> tuple[UpstreamConfig, ...]:
    try:
        raw = yaml.safe_load(text) if yaml_ok else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON or YAML" if yaml_ok else "JSON"
        raise FleetConfigError(f"{where}: not valid {kind} ({str(exc).splitlines()[0]})") from None
    return parse_fleet(raw, where)


def load_fleet_file(path: str) -> tuple[UpstreamConfig, ...]:
    where = f"MJFLOW_UPSTREAMS_FILE ({path})"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetConfigError(f"{where}: cannot be read ({exc.__class__.__name__})") from None
    return load_fleet_text(text, where, yaml_ok=True)


def single_upstream(url: str, key: str, profile: str, mode: str | None,
                    max_in_flight: int | None) -> UpstreamConfig:
    """The one-upstream fleet the single settings stand for."""
    return UpstreamConfig(name=DEFAULT_UPSTREAM, url=url, key=key, profile=profile,  # type: ignore[arg-type]
                          mode=mode, maxInFlight=max_in_flight)  # type: ignore[arg-type]


PLACEHOLDER_URL = "http://upstream.invalid"


def with_default(fleet: tuple[UpstreamConfig, ...], profile: str, mode: str | None,
                 max_in_flight: int) -> tuple[UpstreamConfig, ...]:
    """The fleet, or (none configured) one ``default`` member of the single settings whose
    client says what is missing: jobs are still validated against its profile."""
    return fleet or (single_upstream(PLACEHOLDER_URL, "", profile, mode, max_in_flight),)


def fits(configs: tuple[UpstreamConfig, ...], spec: JobSpec, max_image_bytes: int
         ) -> list[Problem]:
    """What keeps ``spec`` from running on the fleet: ``[]`` when some upstream can run all
    of it. When only some of the upstreams that serve its action can, the job is pinned to
    those (``spec.upstream``), so that routing never sends it where it cannot run."""
    names = [c.name for c in configs]
    pins = list(spec.upstream or [])
    unknown = [p for p in pins if p not in names]
    if unknown:
        return [("upstream", f"no upstream {unknown[0]!r} in the fleet (configured: "
                             f"{', '.join(names)})")]
    if spec.action == "ACTION" and len(configs) > 1 and len(pins) != 1:
        return [("upstream", "an ACTION on an existing task must name the one upstream that "
                             f"holds the task (configured: {', '.join(names)})")]
    route = Route(pins=tuple(pins) or None, action=spec.action, modes=tuple(spec.modes),
                  bot=spec.botType)
    serving = [c for c in configs if c.serves(route)]
    if not serving:
        modes = "/".join(spec.modes) or "any mode"
        among = f" among {', '.join(pins)}" if pins else ""
        return [("upstream" if pins else "action",
                 f"no enabled upstream{among} serves {spec.action} in {modes}")]
    found = [(c, profile_problems(spec, get_profile(c.profile), max_image_bytes))
             for c in serving]
    able = [c.name for c, problems in found if not problems]
    if not able:
        return found[0][1]
    if len(configs) > 1 and len(able) < len(serving):
        spec.upstream = able
    return []
