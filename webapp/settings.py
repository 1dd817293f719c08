"""The one settings module. Everything environment-specific comes from
environment variables through webapp.lib.config (README lists them)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from kombu import Queue

from webapp.lib.config import ConfigError, load_config, parse_int

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    CONFIG = load_config(os.environ, BASE_DIR)
except ConfigError as exc:
    # One line naming the variable, no traceback: the operator fixes the env.
    sys.exit(f"configuration error: {exc}")

DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
# Secrets stored in the database (judge API keys) are encrypted with these
# (webapp.lib.secrets); empty: a key derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = CONFIG.field_encryption_keys
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins
VAR_DIR = CONFIG.var_dir
MEDIA_ROOT = CONFIG.media_root
MEDIA_URL = "/media/"
ARTIFACTS_ROOT = CONFIG.artifacts_root
REDIS_URL = CONFIG.redis_url
REDIS_IS_EMBEDDED = CONFIG.redis_is_embedded

INSTALLED_APPS = [
    "daphne",  # only for `manage.py runserver` and channels.testing; `make run` serves with uvicorn
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "webapp.core",
    "webapp.accounts",
    "webapp.registry",
    "webapp.datasets",
    "webapp.jobs",
    "webapp.deployments",
    "webapp.chat",
    "webapp.evaluations",
    "webapp.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webapp.core.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "webapp.accounts.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Paths that authenticate on their own (API keys) or must stay public.
LOGIN_EXEMPT_PREFIXES = ("/api/", "/v1/", "/healthz", "/static/", "/admin/")

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.core.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {"default": CONFIG.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing
# Serve straight from static/ too, so a server started without collectstatic
# (tests, a quick `manage.py` run) still has its CSS and JS.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # page scripts read it for fetch() POSTs
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "webapp.core.api_errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# --- Redis: Channels layer, Celery broker and results, worker heartbeats ----
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, and
        # channels_redis blocks 5 s (BZPOPMIN) waiting for a consumer's next
        # message: an idle websocket's consumer died with "Timeout reading
        # from …" every ~5 s. A longer read timeout keeps idle sockets up.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "prefix": "workbench:asgi"},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("default"), Queue("gpu"), Queue("eval"))
CELERY_TASK_ROUTES = {
    "jobs.*": {"queue": "gpu"},
    "evaluations.*": {"queue": "eval"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
# Training tasks run for hours: take one at a time and acknowledge after the
# run, so a worker that dies gives the message back instead of losing it.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 12 * 3600}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "purge-expired-sessions": {"task": "accounts.purge_expired_sessions", "schedule": 3600.0},
    "requeue-stale-datasets": {"task": "datasets.requeue_stale", "schedule": 300.0},
    "check-deployments": {"task": "deployments.check_health", "schedule": 30.0},
    # On the default queue: every gpu worker may be busy training for hours.
    "sweep-stale-jobs": {"task": "jobs.sweep_stale", "schedule": 20.0, "options": {"queue": "default"}},
    "sweep-stale-evaluations": {"task": "evaluations.sweep_stale", "schedule": 20.0, "options": {"queue": "default"}},
}
# Uploads: Django spools anything over 2.5 MB to a temporary file, and the
# dataset service streams it from there; this caps what it accepts.
DATASET_MAX_UPLOAD_BYTES = CONFIG.dataset_max_upload_mb * 1024 * 1024
# Largest model import: a tarball's unpacked size (webapp.registry.imports).
REGISTRY_MAX_IMPORT_BYTES = CONFIG.registry_max_import_mb * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Threads (and so database connections) the chat socket's ORM calls run on.
CHAT_DB_THREADS = parse_int(os.environ, "CHAT_DB_THREADS", 8)
# A processing task that has not reported progress for this long is presumed
# dead (its worker was killed) and the dataset is queued again.
DATASET_STALE_AFTER_S = 600
# Training jobs: a job's runner writes heartbeat_at at least every
# JOBS_HEARTBEAT_S (and with every progress line); the beat sweep marks a
# running job failed once it has been silent for JOBS_STALE_AFTER_S (its
# worker or machine died). 90 s + the 20 s sweep period keeps a lost job
# from showing `running` for more than 2 minutes.
JOBS_HEARTBEAT_S = 10
JOBS_STALE_AFTER_S = 90
# Evaluations: the runner writes heartbeat_at with its progress every 0.5 s;
# one silent for EVALUATIONS_STALE_AFTER_S (its worker was killed) is queued
# again by the beat sweep and resumes where its rows end.
EVALUATIONS_STALE_AFTER_S = 60

# Serving (/v1). A request body over V1_MAX_BODY_BYTES answers 413; a key
# with more requests in flight than its limit (ApiKey.max_concurrent_requests,
# else this default) answers 429.
V1_MAX_BODY_BYTES = 4 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = V1_MAX_BODY_BYTES
V1_MAX_CONCURRENT_PER_KEY = 128
V1_MAX_EMBEDDING_INPUTS = 2048
# A revoked key or an edited deployment reaches /v1 within this many seconds
# (webapp.api.lookups).
V1_LOOKUP_CACHE_S = 2.0
SERVING_BACKEND_TIMEOUT_S = 120.0
SERVING_HEALTH_TIMEOUT_S = 10.0

WORKER_HEARTBEAT_INTERVAL_S = 5.0
# A worker whose last heartbeat is older than this is reported as down.
WORKER_HEARTBEAT_TTL_S = 15

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
