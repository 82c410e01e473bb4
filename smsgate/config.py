"""Configuration: config.toml read into frozen dataclasses; unknown or mistyped keys are errors."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = "config.toml"


class ConfigError(Exception):
    """A configuration file is missing, malformed, or has an unknown or mistyped key."""


@dataclass(frozen=True)
class SmscConfig:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "smsgate"
    password: str = "secret12"
    system_type: str = ""
    # The service number residents text; sent as the source of every reply.
    source_addr: str = "7377"
    source_ton: int = 3
    source_npi: int = 0
    embedded_simulator: bool = True
    enquire_link_interval: float = 30.0
    socket_timeout: float = 10.0
    # Submit rate counted per SMS part, as operators sell it; and unanswered submits in flight.
    submit_rate: float = 100.0
    window: int = 100
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    throttle_pause: float = 1.0
    throttle_pause_max: float = 30.0
    request_delivery_receipts: bool = True
    # How a text longer than one SMS goes out: "udh", as numbered parts (one submit_sm each, which
    # every SMSC takes), or "payload", whole in one submit_sm's message_payload for the SMSC to
    # split (one submit, one SMSC id and one receipt a message; not every SMSC accepts it). An
    # SMSC that refuses it gets that message and every later one as parts (docs/performance.md).
    long_text: str = "udh"
    # Seconds a submit may wait for its response before the link is considered dead.
    response_timeout: float = 10.0
    # A submit left unanswered by a lost link (or a crash) waits this long after the next bind for
    # a receipt showing the SMSC took it, before it is sent again (see docs/architecture.md).
    indoubt_grace: float = 5.0
    # Seconds a batch of nothing but delivery receipts waits for a text (or more receipts) to be
    # stored and answered with, before it is stored alone; 0 stores every batch at once.
    receipt_linger: float = 0.004


@dataclass(frozen=True)
class SimulatorConfig:
    # The simulator's control API (used by `smsgate sms`); its SMPP port is [smsc] port.
    control_host: str = "127.0.0.1"
    control_port: int = 2776
    system_id: str = ""  # empty: accept [smsc] system_id / password
    password: str = ""
    receipts: bool = True
    # Operator quirks to rehearse against: "text", "text12", "tlv", "decimal" or "garbage".
    receipt_format: str = "text"
    message_id_format: str = "hex"  # or "decimal"
    throttle_every: int = 0  # answer every Nth submit_sm ESME_RTHROTTLED; 0 = never
    drop_after: int = 0  # close the connection after every N accepted submits; 0 = never
    mo_window: int = 100  # unanswered deliver_sm in flight to one ESME
    message_payload: bool = True  # take submit_sm with message_payload; false: refuse it (0xC1)


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Key for signing session cookies; empty means one is generated and kept in the store folder.
    secret: str = ""
    # Daily cap of SMS parts the website may cause to be sent (registration, reset).
    daily_sms_cap: int = 2000
    secure_cookies: bool = False
    # Reverse proxies in front of the site (addresses or networks, comma-separated): a request
    # from one of them is counted against the address its X-Forwarded-For names. Empty: the
    # peer's own address, whatever the header says.
    trusted_proxies: str = ""


@dataclass(frozen=True)
class StoreConfig:
    path: str = "var/smsgate.db"
    # Days to keep message bodies; older ones are blanked (152-FZ: keep personal data minimal).
    message_retention_days: int = 90
    # A batch of at least this many texts from the SMSC has its БАЛАНС replies read by a process
    # of its own (smsgate/readers.py), on the second core; smaller ones, and every batch when the
    # process is down, are answered on the event loop. 0: no such process.
    reader_min_batch: int = 8


@dataclass(frozen=True)
class LimitsConfig:
    password_per_hour: int = 3
    password_per_day: int = 5
    register_failures: int = 5
    register_lock_minutes: int = 60
    code_ttl_minutes: int = 10
    code_attempts: int = 5
    # Anti-pumping limits on anything that sends an SMS.
    sms_per_prefix_per_hour: int = 60
    sms_per_ip_per_hour: int = 20
    login_failures_per_account: int = 10
    login_failures_per_ip: int = 50
    # A text identical to one stored but never acknowledged (we stopped before answering the
    # SMSC) within this many seconds is the SMSC's redelivery of it, not a new request.
    redelivery_window_seconds: int = 86400


@dataclass(frozen=True)
class PasswordsConfig:
    # Passwords hashed ahead of need (argon2id, in CPU time nothing else wants), so that ПАРОЛЬ
    # and РЕГ answer without waiting for a hash and without taking the core from other texts.
    # Kept in memory only; 0 hashes every password when it is asked for.
    ready: int = 256


@dataclass(frozen=True)
class LogConfig:
    path: str = ""  # empty: stdout
    format: str = "json"  # "json" or "text"
    level: str = "info"


@dataclass(frozen=True)
class OperatorConfig:
    host: str = "127.0.0.1"
    port: int = 9102


@dataclass(frozen=True)
class UssdConfig:
    session_timeout: float = 120.0
    # ussd_service_op values, configurable per operator; defaults are SMPP 3.4's.
    op_pssr_indication: int = 1
    op_pssr_response: int = 17
    op_ussr_request: int = 2
    op_ussr_confirm: int = 18
    op_abort: int = -1  # vendor code for a resident's abort; -1 = none
    # POST /ussd (HTTP aggregators) is refused until this is set; the aggregator's callback URL
    # carries it as ?key=...: the phone number in the request is trusted only from whoever has it.
    http_secret: str = ""


@dataclass(frozen=True)
class Config:
    smsc: SmscConfig = field(default_factory=SmscConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    web: WebConfig = field(default_factory=WebConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    passwords: PasswordsConfig = field(default_factory=PasswordsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    ussd: UssdConfig = field(default_factory=UssdConfig)
    # Where the file was read from; relative paths in it are relative to its folder.
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate


# Environment variables operators set per host, without editing the file.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "SMSGATE_SMSC_HOST": ("smsc", "host"),
    "SMSGATE_SMSC_PORT": ("smsc", "port"),
    "SMSGATE_SMSC_SYSTEM_ID": ("smsc", "system_id"),
    "SMSGATE_SMSC_PASSWORD": ("smsc", "password"),
    "SMSGATE_WEB_PORT": ("web", "port"),
    "SMSGATE_WEB_SECRET": ("web", "secret"),
    "SMSGATE_STORE_PATH": ("store", "path"),
    "SMSGATE_LOG_PATH": ("log", "path"),
    "SMSGATE_LOG_FORMAT": ("log", "format"),
    "SMSGATE_LOG_LEVEL": ("log", "level"),
    "SMSGATE_USSD_HTTP_SECRET": ("ussd", "http_secret"),
}


def _coerce(section: str, key: str, value: Any, kind: Any) -> Any:
    where = f"[{section}] {key}"
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a whole number, not {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a whole number, not {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, not {value!r}")
    raise ConfigError(f"{where}: unsupported type")  # pragma: no cover


def _section(name: str, cls: type[Any], values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key [{name}] {key}")
        kwargs[key] = _coerce(name, key, value, hints[key])
    obj = cls(**kwargs)
    _validate(name, obj)
    return obj


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def trusted_networks(spec: str) -> tuple[IpNetwork, ...]:
    """`[web] trusted_proxies` read: "127.0.0.1, 10.0.0.0/8" -> networks; ConfigError if bad."""
    found: list[IpNetwork] = []
    for item in spec.split(","):
        if not item.strip():
            continue
        try:
            found.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"[web] trusted_proxies: {item.strip()!r} is not an address or network"
            ) from None
    return tuple(found)


def _validate(name: str, obj: Any) -> None:
    if isinstance(obj, SmscConfig):
        if len(obj.system_id) > 15:
            raise ConfigError("[smsc] system_id is longer than SMPP's 15 characters")
        if len(obj.password) > 8:
            raise ConfigError("[smsc] password is longer than SMPP's 8 characters")
        if obj.window < 1:
            raise ConfigError("[smsc] window must be at least 1")
        if obj.submit_rate <= 0:
            raise ConfigError("[smsc] submit_rate must be positive")
        if not 0 <= obj.receipt_linger <= 0.1:
            raise ConfigError("[smsc] receipt_linger must be from 0 to 0.1 seconds")
        if obj.long_text not in ("udh", "payload"):
            raise ConfigError('[smsc] long_text must be "udh" or "payload"')
    if isinstance(obj, StoreConfig) and not 0 <= obj.reader_min_batch <= 10_000:
        raise ConfigError("[store] reader_min_batch must be from 0 to 10000")
    if isinstance(obj, WebConfig):
        trusted_networks(obj.trusted_proxies)
    if isinstance(obj, UssdConfig):
        _validate_ussd(obj)
    if isinstance(obj, PasswordsConfig) and not 0 <= obj.ready <= 100_000:
        raise ConfigError("[passwords] ready must be from 0 to 100000")
    if isinstance(obj, LogConfig):
        if obj.format not in ("json", "text"):
            raise ConfigError('[log] format must be "json" or "text"')
        if obj.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("[log] level must be debug, info, warning or error")


def _validate_ussd(obj: UssdConfig) -> None:
    if obj.session_timeout <= 0:
        raise ConfigError("[ussd] session_timeout must be positive")
    for name in ("op_pssr_indication", "op_pssr_response", "op_ussr_request", "op_ussr_confirm"):
        if not 0 <= getattr(obj, name) <= 255:
            raise ConfigError(f"[ussd] {name} must be an octet (0-255)")
    if not -1 <= obj.op_abort <= 255:
        raise ConfigError("[ussd] op_abort must be an octet (0-255), or -1 for none")
    # What the resident's side sends must tell opening, answering and aborting apart.
    inbound = [obj.op_pssr_indication, obj.op_ussr_confirm]
    if obj.op_abort >= 0:
        inbound.append(obj.op_abort)
    if len(set(inbound)) != len(inbound):
        raise ConfigError("[ussd] op_pssr_indication, op_ussr_confirm and op_abort must differ")


def from_dict(data: dict[str, Any], base_dir: str = ".") -> Config:
    """Build a Config from parsed TOML, refusing unknown sections and keys."""
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for name, values in data.items():
        kind = hints.get(name)
        if name == "base_dir" or kind is None or not isinstance(kind, type):
            raise ConfigError(f"unknown section [{name}]")
        sections[name] = _section(name, kind, values)
    return Config(**sections, base_dir=base_dir)


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Read the config file (--config, then $SMSGATE_CONFIG, then ./config.toml) and env overrides."""
    env = dict(os.environ) if env is None else env
    chosen = Path(path or env.get("SMSGATE_CONFIG") or DEFAULT_PATH)
    try:
        raw = chosen.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {chosen}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{chosen}: {exc}") from None
    for variable, (section, key) in ENV_OVERRIDES.items():
        if variable in env:
            data.setdefault(section, {})[key] = env[variable]
    return from_dict(data, base_dir=str(chosen.resolve().parent))


def replace(config: Config, **sections: Any) -> Config:
    """A copy of config with some sections' fields changed: replace(c, smsc={"port": 1})."""
    changed: dict[str, Any] = {}
    for name, values in sections.items():
        changed[name] = dataclasses.replace(getattr(config, name), **values)
    return dataclasses.replace(config, **changed)


