"""Settings are parsed and range-checked when the app is created; a bad one stops start-up
with one line naming the variable, its value and what is expected."""

from __future__ import annotations

import subprocess

import pytest

from app.config import SettingsError, settings_from_env, startup_warnings
from tests.procfile import BIN, ROOT, _env, free_port


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DB_POOL_SIZE", "five", "an integer >= 1"),
        ("DB_POOL_SIZE", "0", "an integer >= 1"),
        ("DB_POOL_TIMEOUT", "-1", "a number >= 0"),
        ("OPENAI_READ_TIMEOUT", "inf", "a number >= 0"),
        ("TRUSTED_PROXIES", "11", "an integer from 0 to 10"),
        ("LOG_FORMAT", "xml", "one of json, text"),
        ("LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SQLALCHEMY_ECHO", "maybe", "true or false (also 1/0, yes/no, on/off)"),
        ("OPENAI_BASE_URL", "localhost:11434", "an http:// or https:// URL"),
        ("DATABASE_URL", "mysql://db/x", "a postgresql:// or sqlite:/// URL"),
        ("RETENTION_DAYS", "0", "an integer from 1 to 36500"),
        ("RETENTION_DAYS", "90d", "an integer from 1 to 36500"),
        ("TEMPORARY_RETENTION_HOURS", "0", "an integer from 1 to 8760"),
        ("TEMPORARY_RETENTION_HOURS", "8761", "an integer from 1 to 8760"),
        ("PURGE_INTERVAL_SECONDS", "0.5", "0 (off) or a number from 1 to 86400"),
        ("PURGE_INTERVAL_SECONDS", "-1", "0 (off) or a number from 1 to 86400"),
        ("PURGE_INTERVAL_SECONDS", "nan", "0 (off) or a number from 1 to 86400"),
        (
            "CORS_ORIGINS",
            "https://app.example.com/path",
            "* or comma-separated origins like https://app.example.com:8443",
        ),
    ],
)
def test_a_bad_value_names_the_variable_its_value_and_what_is_expected(name, value, expected):
    with pytest.raises(SettingsError) as raised:
        settings_from_env("/tmp", {name: value})

    assert str(raised.value) == f"invalid setting {name}={value!r}: expected {expected}"


def test_a_database_password_is_never_repeated_in_the_error():
    with pytest.raises(SettingsError) as raised:
        settings_from_env("/tmp", {"DATABASE_URL": "mysql://app:s3cret@db/x"})

    assert str(raised.value) == (
        "invalid setting DATABASE_URL='mysql://app:***@db/x': "
        "expected a postgresql:// or sqlite:/// URL"
    )


def test_good_values_are_parsed():
    settings = settings_from_env(
        "/tmp",
        {
            "CORS_ORIGINS": "http://localhost:3000, https://chat.example.com/",
            "LOG_FORMAT": "JSON",
            "LOG_LEVEL": "warning",
            "TRUSTED_PROXIES": "1",
            "SQLALCHEMY_ECHO": "off",
            "DATABASE_URL": "postgres://u@db/x",
            "RETENTION_DAYS": "90",
            "TEMPORARY_RETENTION_HOURS": "2",
            "PURGE_INTERVAL_SECONDS": "0",
        },
    )

    assert settings["CORS_ORIGINS"] == ("http://localhost:3000", "https://chat.example.com")
    assert settings["LOG_FORMAT"] == "json"
    assert settings["LOG_LEVEL"] == "WARNING"
    assert settings["TRUSTED_PROXIES"] == 1
    assert settings["SQLALCHEMY_ECHO"] is False
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db/x"
    assert settings["RETENTION_DAYS"] == 90
    assert settings["TEMPORARY_RETENTION_HOURS"] == 2
    assert settings["PURGE_INTERVAL_SECONDS"] == 0


def test_defaults_need_no_environment():
    settings = settings_from_env("/srv/instance", {})

    assert settings["CORS_ORIGINS"] == ()
    assert settings["TRUSTED_PROXIES"] == 0
    assert settings["LOG_FORMAT"] == "text"
    assert settings["SQLALCHEMY_DATABASE_URI"] == "sqlite:////srv/instance/convstore.db"
    # Retention: everything kept; temporary conversations a day; a purge every 5 minutes.
    assert settings["RETENTION_DAYS"] is None
    assert settings["TEMPORARY_RETENTION_HOURS"] == 24
    assert settings["PURGE_INTERVAL_SECONDS"] == 300


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # FLASK_SKIP_DOTENV: a developer's .env must not change what is tested.
    environment = _env({"FLASK_SKIP_DOTENV": "1", **env})
    for name in ("DATABASE_URL", "PORT", "LOG_FORMAT", "WEB_CONCURRENCY"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        args, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_the_flask_cli_stops_with_one_line(tmp_path):
    done = _run(
        [str(BIN / "flask"), "--app", "wsgi", "routes"],
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "DB_POOL_SIZE": "lots"},
    )

    assert done.returncode == 4
    assert done.stderr == (
        "convstore: invalid setting DB_POOL_SIZE='lots': expected an integer >= 1\n"
    )


def test_gunicorn_stops_with_one_line_before_starting_workers(tmp_path):
    done = _run(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
            "LOG_FORMAT": "xml",
        },
    )

    assert done.returncode == 4
    lines = done.stderr.splitlines()
    assert "convstore: invalid setting LOG_FORMAT='xml': expected one of json, text" in lines
    assert "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr


def test_gunicorns_own_settings_are_checked_too(tmp_path):
    done = _run(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "WEB_CONCURRENCY": "0"},
    )

    assert done.returncode == 4
    assert done.stderr == (
        "convstore: invalid setting WEB_CONCURRENCY='0': expected an integer >= 1\n"
    )


class TestPlatformWithoutDatabase:
    def test_port_without_database_url_warns_that_data_goes_to_local_disk(self):
        settings = settings_from_env("/app/instance", {"PORT": "5000"})

        (warning,) = startup_warnings(settings, {"PORT": "5000"})

        assert warning.startswith(
            "PORT is set but DATABASE_URL is not: every conversation goes to the SQLite file "
            "/app/instance/convstore.db on this machine's local disk"
        )

    @pytest.mark.parametrize(
        "env", [{}, {"PORT": "5000", "DATABASE_URL": "postgresql://db/x"}, {"PORT": ""}]
    )
    def test_no_warning_otherwise(self, env):
        assert startup_warnings(settings_from_env("/tmp", env), env) == []

    def test_the_cli_says_it_on_start_up(self, tmp_path):
        done = _run([str(BIN / "flask"), "--app", "wsgi", "routes"], {"PORT": "5000"})

        assert done.returncode == 0
        assert "PORT is set but DATABASE_URL is not" in done.stderr
