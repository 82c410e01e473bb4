"""Config: defaults, the file, env overrides, and errors that name the key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from smsgate import config


def test_repository_config_loads() -> None:
    loaded = config.load(Path(__file__).parent.parent / "config.toml", env={})
    assert loaded.smsc.embedded_simulator is True
    assert loaded.smsc.source_addr == "7377"
    assert loaded.web.port == 8080


def test_production_example_config_loads_with_the_simulator_off() -> None:
    example = Path(__file__).parent.parent / "deploy" / "config.example.toml"
    loaded = config.load(example, env={})
    assert loaded.smsc.embedded_simulator is False
    assert loaded.smsc.host != "127.0.0.1"
    assert loaded.web.secure_cookies is True
    assert loaded.log.path.startswith("/var/log/")
    assert Path(loaded.store.path).is_absolute()


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[smsc]\nhots = "x"\n', encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"\[smsc\] hots"):
        config.load(path, env={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[smpp]\nport = 1\n", encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"\[smpp\]"):
        config.load(path, env={})


def test_mistyped_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[smsc]\nport = "many"\n', encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"\[smsc\] port must be a whole number"):
        config.load(path, env={})


def test_env_overrides_and_smsgate_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[smsc]\nport = 1\n", encoding="utf-8")
    loaded = config.load(None, env={"SMSGATE_CONFIG": str(path), "SMSGATE_SMSC_PORT": "2999"})
    assert loaded.smsc.port == 2999
    assert loaded.resolve("var/x.db") == tmp_path / "var/x.db"


def test_smpp_limits_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[smsc]\npassword = "far-too-long"\n', encoding="utf-8")
    with pytest.raises(config.ConfigError, match="8 characters"):
        config.load(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml", env={})


def test_ussd_operation_codes_per_operator(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[ussd]\nop_ussr_confirm = 0x12\nop_abort = 0x81\nsession_timeout = 60\n")
    loaded = config.load(path, env={"SMSGATE_USSD_HTTP_SECRET": "k"})
    assert (loaded.ussd.op_ussr_confirm, loaded.ussd.op_abort) == (0x12, 0x81)
    assert (loaded.ussd.op_pssr_indication, loaded.ussd.op_ussr_request) == (1, 2)  # SMPP 3.4's
    assert loaded.ussd.session_timeout == 60.0 and loaded.ussd.http_secret == "k"


@pytest.mark.parametrize(("body", "error"), [
    ("op_ussr_request = 256", "op_ussr_request must be an octet"),
    ("op_abort = -2", "op_abort must be an octet"),
    ("op_abort = 18", "must differ"),
    ("op_pssr_indication = 18", "must differ"),
    ("session_timeout = 0", "session_timeout must be positive"),
])
def test_ussd_mistakes_are_named(tmp_path: Path, body: str, error: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[ussd]\n{body}\n")
    with pytest.raises(config.ConfigError, match=error):
        config.load(path, env={})


@pytest.mark.parametrize(("section", "key", "default", "wrong", "error"), [
    ("passwords", "ready", 256, (-1, 100_001), r"\[passwords\] ready must be from 0 to 100000"),
    ("smsc", "receipt_linger", 0.004, (-0.001, 0.2), r"\[smsc\] receipt_linger must be from 0"),
    ("store", "reader_min_batch", 8, (-1, 10_001), r"\[store\] reader_min_batch must be from 0 to"),
])
def test_bounded_settings(
    section: str, key: str, default: float, wrong: tuple[float, float], error: str
) -> None:
    assert getattr(getattr(config.from_dict({}), section), key) == default
    assert getattr(getattr(config.from_dict({section: {key: 0}}), section), key) == 0
    for value in wrong:
        with pytest.raises(config.ConfigError, match=error):
            config.from_dict({section: {key: value}})


def test_long_text_is_udh_or_payload() -> None:
    assert config.from_dict({}).smsc.long_text == "udh"  # every SMSC takes parts
    assert config.from_dict({"smsc": {"long_text": "payload"}}).smsc.long_text == "payload"
    with pytest.raises(config.ConfigError, match=r'\[smsc\] long_text must be "udh" or "payload"'):
        config.from_dict({"smsc": {"long_text": "sar"}})


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert config.from_dict({}).web.trusted_proxies == ""
    assert config.trusted_networks("127.0.0.1, 10.0.0.0/8,::1") == (
        ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    with pytest.raises(config.ConfigError, match=r"\[web\] trusted_proxies: 'proxy.local'"):
        config.from_dict({"web": {"trusted_proxies": "127.0.0.1, proxy.local"}})
