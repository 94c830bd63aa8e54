"""Typed settings, read once from the environment (prefix ``MJFLOW_``) and ``.env``.

Every setting is documented with its default in ``docs/configuration.md``; the names of
the first block are fixed by the design and must not change.
"""
from __future__ import annotations

import functools
import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.errors import ConfigError
from worker.jobs.fit import Problem
from worker.jobs.spec import JobSpec
from worker.redisurl import is_sentinel, parse_sentinel, redact
from worker.storage.naming import validate_template
from worker.upstreams import (
    FleetConfigError,
    Mode,
    ProfileName,
    UpstreamConfig,
    fits,
    load_fleet_file,
    load_fleet_text,
    single_upstream,
    with_default,
)


def _csv(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v).strip() for v in value]  # type: ignore[union-attr]


def _check_url(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value in (None, ""):
        return None
    parsed = urlparse(value)
    if parsed.scheme not in schemes or (parsed.scheme not in ("file",) and not parsed.netloc):
        raise ValueError(
            f"{name} must be a URL with scheme {'/'.join(schemes)}, got {redact(value)!r}")
    return value.rstrip("/") if parsed.scheme in ("http", "https") else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MJFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- fixed names (DESIGN.md) -----------------------------------------------------
    upstream_url: str | None = None
    upstream_key: str = Field(default="", repr=False)
    upstream_profile: ProfileName = "midjourney-proxy"
    upstream_mode: Mode | None = None
    max_in_flight: int = Field(default=13, ge=1, le=1000)
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    storage_url: str = "file://./data/images"
    public_url: str | None = None
    hook_secret: str | None = Field(default=None, repr=False)
    hook_secret_previous: str | None = Field(default=None, repr=False)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    webhook_secret: str | None = Field(default=None, repr=False)
    allow_private_urls: bool = False

    # --- the fleet (worker.upstreams): a list instead of the single-upstream shorthand ----
    upstreams: str | None = Field(default=None, repr=False)
    upstreams_file: str | None = None
    routing: Literal["priority", "cheapest"] = "priority"
    budget_per_day: float | None = Field(default=None, gt=0)
    _fleet: tuple[UpstreamConfig, ...] = PrivateAttr(default=())

    # --- Redis Sentinel (when MJFLOW_REDIS_URL / MJFLOW_BROKER_URL are sentinel://) ----
    redis_sentinel_master: str = Field(default="mymaster", min_length=1)
    redis_sentinel_password: str | None = Field(default=None, repr=False)
    redis_sentinel_tls: bool = False
    redis_sentinel_tls_ca_file: str | None = None

    # --- engine ----------------------------------------------------------------------
    key_prefix: str = "mjflow"
    confirm_terminal_callbacks: bool = True
    callback_max_bytes: int = Field(default=256 * 1024, ge=1024)
    poll_interval_s: float | None = Field(default=None, gt=0)
    heartbeat_push_s: float = Field(default=60.0, gt=0)
    missing_polls_before_lost: int = Field(default=3, ge=1)
    lost_task_policy: Literal["fail", "resubmit"] = "fail"
    submit_grace_s: float = Field(default=60.0, gt=0)
    step_deadline_s: float = Field(default=600.0, gt=0)
    upscale_deadline_s: float = Field(default=300.0, gt=0)
    queue_deadline_s: float = Field(default=600.0, gt=0)
    queue_per_task_s: float = Field(default=60.0, ge=0)
    relax_queue_factor: float = Field(default=6.0, ge=1)
    late_success_grace_s: float = Field(default=86_400.0, ge=0)
    late_poll_s: float = Field(default=600.0, gt=0)
    queue_full_backoff_s: float = Field(default=5.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=5.0, gt=0)
    breaker_max_cooldown_s: float = Field(default=120.0, gt=0)
    max_requeues: int = Field(default=100, ge=1)
    job_retention_s: int = Field(default=7 * 24 * 3600, ge=60)
    tick_interval_s: float = Field(default=1.0, gt=0)
    redrive_s: float = Field(default=60.0, gt=0)
    upstream_timeout_s: float = Field(default=30.0, gt=0)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    local_run: bool = False
    metrics_key: str = Field(default="", repr=False)

    # --- storage and delivery ----------------------------------------------------------
    max_image_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    download_timeout_s: float = Field(default=60.0, gt=0)
    allowed_image_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_private_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_image_pixels: int = Field(default=64_000_000, ge=1_000_000)
    presign_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    key_template: str = "{job_id}/{step_index:02d}-{label}{suffix}.{ext}"
    step_events: bool = False
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    max_upload_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)

    @field_validator("api_keys", "allowed_image_hosts", "allowed_private_networks",
                     mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> list[str]:
        return _csv(value)

    @field_validator("allowed_private_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network (CIDR): {entry!r}") from None
        return value

    @field_validator("upstream_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None, info) -> str | None:  # type: ignore[no-untyped-def]
        return _check_url(f"MJFLOW_{info.field_name.upper()}", value, ("http", "https"))

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _redis_url(cls, value: str | None, info) -> str | None:  # type: ignore[no-untyped-def]
        name = f"MJFLOW_{info.field_name.upper()}"
        if is_sentinel(value):
            try:
                parse_sentinel(value)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"not a valid sentinel URL: {exc}") from None
            return value
        schemes = ("redis", "rediss", "unix", "sentinel")
        if info.field_name == "broker_url":
            schemes += ("amqp", "amqps", "pyamqp")
        return _check_url(name, value, schemes)

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("s3", "file") or (parsed.scheme == "s3" and not parsed.netloc):
            raise ValueError(
                f"MJFLOW_STORAGE_URL must be s3://bucket/prefix or file:///path, got {value!r}"
            )
        return value

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            validate_template(value)
        except ValueError as exc:
            raise ValueError(f"MJFLOW_KEY_TEMPLATE: {exc}") from None
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value and not value.startswith("whsec_"):
            raise ValueError("MJFLOW_WEBHOOK_SECRET must start with 'whsec_'")
        return value or None

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.public_url and not self.hook_secret:
            raise ValueError("MJFLOW_HOOK_SECRET is required when MJFLOW_PUBLIC_URL is set")
        self._fleet = self._read_fleet()
        return self

    def _read_fleet(self) -> tuple[UpstreamConfig, ...]:
        listed = [name for name, value in (("MJFLOW_UPSTREAMS", self.upstreams),
                                           ("MJFLOW_UPSTREAMS_FILE", self.upstreams_file)) if value]
        if len(listed) == 2:
            raise ValueError("MJFLOW_UPSTREAMS and MJFLOW_UPSTREAMS_FILE are both set: use one")
        if listed and self.upstream_url:
            raise ValueError(f"{listed[0]} and MJFLOW_UPSTREAM_URL are both set: give the "
                             "fleet as a list, or one upstream with MJFLOW_UPSTREAM_URL, not both")
        try:
            if self.upstreams:
                return load_fleet_text(self.upstreams, "MJFLOW_UPSTREAMS", yaml_ok=False)
            if self.upstreams_file:
                return load_fleet_file(self.upstreams_file)
        except FleetConfigError as exc:
            raise ValueError(str(exc)) from None
        if self.upstream_url:
            return (single_upstream(self.upstream_url, self.upstream_key, self.upstream_profile,
                                    self.upstream_mode, self.max_in_flight),)
        return ()

    @property
    def fleet(self) -> tuple[UpstreamConfig, ...]:
        """The upstreams mjflow drives (empty when none is configured)."""
        return self._fleet

    @property
    def upstream_configs(self) -> tuple[UpstreamConfig, ...]:
        """The fleet, or its stand-in while none is configured (``with_default``)."""
        return with_default(self._fleet, self.upstream_profile, self.upstream_mode,
                            self.max_in_flight)

    def fits(self, spec: JobSpec) -> list[Problem]:
        """What keeps a job from running on the configured upstreams (``upstreams.fits``)."""
        return fits(self.upstream_configs, spec, self.max_upload_bytes)

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        var = f"MJFLOW_{field.upper()}" if err["loc"] else "settings"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {var}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a bad value exits with a message naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()


def reset_settings() -> None:
    get_settings.cache_clear()
