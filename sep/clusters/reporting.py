"""Attribute reporting (ZCL r8 2.5.7, 2.5.11), sans-IO.

A report is due when at least ``min_interval`` has passed since the last one and either
the value changed (by at least ``reportable_change`` for analog types, at all for
discrete ones) or ``max_interval`` (when not 0) has passed. ``max_interval == 0xFFFF``
removes the configuration. The first report follows the configuration at once.

Reports go to the node that configured reporting (the common SE practice when no
binding exists), one Report Attributes frame per destination with every due attribute.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from zigpy.zcl import foundation

if TYPE_CHECKING:
    from sep.clusters.base import ClusterServer


@dataclasses.dataclass
class ReportConfig:
    attr_id: int
    min_interval: int
    max_interval: int
    reportable_change: Any
    dst_nwk: int
    dst_ep: int
    last_time: float | None = None
    last_value: Any = None


class Reporter:
    def __init__(self, server: ClusterServer) -> None:
        self.server = server
        self.configs: dict[tuple[int, int, int], ReportConfig] = {}

    def configure(self, cfg: ReportConfig, now: float) -> None:
        key = (cfg.attr_id, cfg.dst_nwk, cfg.dst_ep)
        if cfg.max_interval == 0xFFFF:
            self.configs.pop(key, None)
            return
        self.configs[key] = cfg

    def config_for(self, attr_id: int) -> ReportConfig | None:
        for (a, _, _), cfg in self.configs.items():
            if a == attr_id:
                return cfg
        return None

    def _changed(self, cfg: ReportConfig, value: Any) -> bool:
        if cfg.last_value is None:
            return True
        d = self.server.defs[cfg.attr_id]
        data_type = foundation.DataType.from_type_id(d.zcl_type)
        if data_type.type_class == foundation.DataClass.Analog:
            try:
                delta = abs(value - cfg.last_value)
            except TypeError:
                return value != cfg.last_value
            return delta >= max(cfg.reportable_change or 0, 1) if delta else False
        return value != cfg.last_value

    def due(self, now: float) -> dict[tuple[int, int], bytes]:
        """Report Attributes payloads due now, keyed by (dst_nwk, dst_ep)."""
        out: dict[tuple[int, int], bytes] = {}
        for cfg in list(self.configs.values()):
            since = None if cfg.last_time is None else now - cfg.last_time
            if since is not None and since < cfg.min_interval:
                continue
            try:
                value = self.server.read_value(cfg.attr_id)
            except LookupError:  # a live source without a trusted value does not report
                continue
            periodic = cfg.max_interval != 0 and (since is None or since >= cfg.max_interval)
            if not (periodic or self._changed(cfg, value)):
                continue
            cfg.last_time = now
            cfg.last_value = value
            rec = foundation.Attribute(
                attrid=cfg.attr_id, value=self.server.type_value(cfg.attr_id)
            ).serialize()
            key = (cfg.dst_nwk, cfg.dst_ep)
            out[key] = out.get(key, b"") + rec
        return out
