"""Bridge settings and the broker URL: ``mqtt://[user[:password]@]host[:port]`` or
``mqtts://...`` (TLS, default port 8883)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from urllib.parse import unquote, urlsplit


class BridgeConfigError(ValueError):
    pass


@dataclasses.dataclass
class BridgeConfig:
    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    base_topic: str = "sep"
    discovery_prefix: str = "homeassistant"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    command_token: str | None = None  # when set, commands must carry it as "token"
    queue_limit: int = 10_000  # readings kept while the broker is away
    publish_interval: float = 10.0  # seconds (wall time) between readings
    backoff_max: float = 30.0
    supply_control: bool = False  # set_supply command and a Home Assistant supply switch

    @property
    def broker(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, **kw: object) -> BridgeConfig:
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # e.g. an unclosed [IPv6 address
            raise BridgeConfigError(f"bad broker URL {url!r}: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BridgeConfigError(f"broker URL must start with mqtt:// or mqtts://, not {url!r}")
        if not parts.hostname:
            raise BridgeConfigError(f"broker URL has no host: {url!r}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise BridgeConfigError(f"bad port in {url!r}") from exc
        cfg = cls(host=parts.hostname, port=port, tls=tls,
                  username=unquote(parts.username) if parts.username else None,
                  password=unquote(parts.password) if parts.password else None)
        for key, value in kw.items():
            if value is not None:
                setattr(cfg, key, value)
        return cfg

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx
