"""Settings: typed, from MJFLOW_ variables; a bad value fails at start naming the variable;
every setting is documented with its default in docs/configuration.md."""
from __future__ import annotations

from pathlib import Path

import pytest

from worker.settings import ConfigError, Settings, load_settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


@pytest.mark.parametrize("var,value,needle", [
    ("MJFLOW_UPSTREAM_PROFILE", "nope", "MJFLOW_UPSTREAM_PROFILE"),
    ("MJFLOW_UPSTREAM_URL", "not a url", "MJFLOW_UPSTREAM_URL"),
    ("MJFLOW_REDIS_URL", "http://x", "MJFLOW_REDIS_URL"),
    ("MJFLOW_STORAGE_URL", "ftp://x", "MJFLOW_STORAGE_URL"),
    ("MJFLOW_MAX_IN_FLIGHT", "0", "MJFLOW_MAX_IN_FLIGHT"),
    ("MJFLOW_WEBHOOK_SECRET", "plain", "MJFLOW_WEBHOOK_SECRET"),
    ("MJFLOW_UPSTREAM_MODE", "SLOW", "MJFLOW_UPSTREAM_MODE"),
])
def test_bad_values_name_the_variable(monkeypatch, var, value, needle):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert needle in str(err.value)


def test_public_url_needs_hook_secret(monkeypatch):
    monkeypatch.setenv("MJFLOW_PUBLIC_URL", "https://hooks.example.com")
    monkeypatch.delenv("MJFLOW_HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="MJFLOW_HOOK_SECRET"):
        load_settings()


def test_env_and_lists(monkeypatch):
    monkeypatch.setenv("MJFLOW_API_KEYS", "key-alpha9, b,,c")
    monkeypatch.setenv("MJFLOW_UPSTREAM_URL", "https://mj.example.com/")
    s = load_settings()
    assert s.api_keys == ["key-alpha9", "b", "c"]
    assert s.upstream_url == "https://mj.example.com"
    assert s.broker == s.redis_url
    assert "key-alpha9" not in repr(s)     # secrets stay out of repr


def test_every_setting_is_documented_with_its_default():
    text = DOC.read_text()
    for name in Settings.model_fields:
        assert f"`MJFLOW_{name.upper()}`" in text, f"MJFLOW_{name.upper()} missing from {DOC.name}"


@pytest.mark.parametrize("var,value,needle", [
    ("MJFLOW_REDIS_URL", "sentinel://:hunter2@h1:26379;redis://h2:6379", "sentinel://"),
    ("MJFLOW_REDIS_URL", "sentinel://:hunter2@h1:notaport", "Port"),
    ("MJFLOW_BROKER_URL", "sentinel://:hunter2@h1:26379/x", "database must be a number"),
    ("MJFLOW_BROKER_URL", "sentinel://:hunter2@h1:1/1;sentinel://h2:1/2", "different databases"),
    ("MJFLOW_REDIS_URL", "sentinel://", "no host"),
    ("MJFLOW_REDIS_URL", "amqp://:hunter2@rabbit//", "MJFLOW_REDIS_URL"),
])
def test_bad_sentinel_urls_are_clear_and_hide_the_password(monkeypatch, var, value, needle):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert var in text and needle in text, text
    assert "hunter2" not in text


def test_sentinel_urls_are_accepted_and_the_broker_gets_them_in_kombu_form(monkeypatch):
    from worker.celery_app import make_celery

    url = "sentinel://:pw@127.0.0.1:26379;sentinel://127.0.0.1:26380/2"
    s = load_settings(redis_url=url, redis_sentinel_master="prod", redis_sentinel_password="sentinel-pw-42")
    app = make_celery(s)
    assert app.conf.broker_url == "sentinel://:pw@127.0.0.1:26379/2;sentinel://127.0.0.1:26380"
    opts = app.conf.broker_transport_options
    assert opts["master_name"] == "prod" and opts["sentinel_kwargs"]["password"] == "sentinel-pw-42"
    assert "sentinel-pw-42" not in repr(s)
