"""The meter on a Silicon Labs EZSP stick through bellows (unmodified).

bellows runs only as coordinator and trust centre (SE 1.x ESP model). Endpoints go in
``additional_endpoints`` so that bellows registers them with EZSP ``addEndpoint`` during
start-up, before the network comes up — the only time the NCP accepts them.

bellows always registers zigpy's default endpoints (1: HA IAS controller, 2: ZLL,
242: Green Power) too, so the SE endpoint must use another number (the meter uses 9 on
EZSP unless told otherwise); see ``sep meter --endpoint``.

What is exercised here without hardware: building the config (validated by bellows' own
schema). Running against a stick, or the NCP emulator, is a later piece of work.
"""

from __future__ import annotations

import bellows.zigbee.application
import zigpy.config as conf
import zigpy.zdo.types as zdo_t

EZSP_SE_ENDPOINT = 9


def ezsp_config(device: str, *, endpoints: list[zdo_t.SimpleDescriptor], baudrate: int = 115200,
                flow_control: str | None = None, database_path: str | None = None) -> dict:
    device_cfg: dict = {conf.CONF_DEVICE_PATH: device, conf.CONF_DEVICE_BAUDRATE: baudrate}
    if flow_control:
        device_cfg[conf.CONF_DEVICE_FLOW_CONTROL] = flow_control
    return {
        conf.CONF_DEVICE: device_cfg,
        conf.CONF_DATABASE: database_path,
        conf.CONF_ADDITIONAL_ENDPOINTS: [d.as_dict() for d in endpoints],
        conf.CONF_OTA: {conf.CONF_OTA_ENABLED: False},
        conf.CONF_TOPO_SCAN_ENABLED: False,
    }


def make_ezsp_controller(device: str, *, endpoints: list[zdo_t.SimpleDescriptor],
                         baudrate: int = 115200, flow_control: str | None = None,
                         database_path: str | None = None):
    cfg = ezsp_config(device, endpoints=endpoints, baudrate=baudrate,
                      flow_control=flow_control, database_path=database_path)
    return bellows.zigbee.application.ControllerApplication(cfg)
