from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from webapp.lib.config import EMBEDDED_REDIS_PORT, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_use_sqlite_under_var_and_the_embedded_redis(tmp_path: Path) -> None:
    config = load_config({"VAR_DIR": str(tmp_path)}, ROOT)
    assert config.database["ENGINE"] == "django.db.backends.sqlite3"
    assert config.database["NAME"] == str(tmp_path / "db.sqlite3")
    assert config.redis_url == f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
    assert config.redis_is_embedded
    assert config.debug is False
    assert config.allowed_hosts == ["127.0.0.1", "localhost"]
    assert config.media_root == tmp_path / "media"
    assert config.artifacts_root == tmp_path / "artifacts"


def test_overrides_are_parsed(tmp_path: Path) -> None:
    env = {
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/workbench",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "DEBUG": "true",
        "ALLOWED_HOSTS": "llm.example.com, 10.0.0.5",
        "SECRET_KEY": "x" * 40,
        "ARTIFACTS_ROOT": str(tmp_path / "models"),
        "MEDIA_ROOT": str(tmp_path / "uploads"),
    }
    config = load_config(env, ROOT)
    assert config.database["ENGINE"] == "django.db.backends.postgresql"
    assert (config.database["NAME"], config.database["HOST"], config.database["PORT"]) == ("workbench", "127.0.0.1", 5432)
    assert config.redis_url == "redis://127.0.0.1:6379/3" and not config.redis_is_embedded
    assert config.debug is True
    assert config.allowed_hosts == ["llm.example.com", "10.0.0.5"]
    assert config.secret_key == "x" * 40
    assert config.artifacts_root == tmp_path / "models"
    assert config.media_root == tmp_path / "uploads"


def test_secret_key_is_generated_once_and_reused(tmp_path: Path) -> None:
    first = load_config({"VAR_DIR": str(tmp_path)}, ROOT).secret_key
    second = load_config({"VAR_DIR": str(tmp_path)}, ROOT).secret_key
    assert first == second and len(first) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://root@localhost/db"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "postgres://localhost:5432/"),
        ("REDIS_URL", "http://localhost:6379"),
        ("REDIS_URL", "redis://localhost:notaport/0"),
        ("REDIS_URL", "redis://localhost:6379/abc"),
        ("DEBUG", "maybe"),
        ("ALLOWED_HOSTS", " , "),
        ("SECRET_KEY", "short"),
        ("ARTIFACTS_ROOT", ""),
    ],
)
def test_malformed_value_names_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"VAR_DIR": str(tmp_path), name: value}, ROOT)
    assert info.value.variable == name
    assert str(info.value).startswith(f"{name}: ")


def test_bad_database_url_stops_startup_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path), "DATABASE_URL": "mysql://root@localhost/db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: DATABASE_URL: unsupported scheme 'mysql'")
