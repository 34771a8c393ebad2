"""Build a zigpy ControllerApplication for a radio kind (the radio-selection seam)."""

from __future__ import annotations

from typing import Any

import zigpy.application
import zigpy.config as conf
import zigpy.zdo.types as zdo_t

from radios.air import VirtualAir
from radios.virtual import VirtualControllerApplication, virtual_config

RADIO_KINDS = ("virtual", "ezsp")


def make_controller(
    kind: str,
    *,
    ieee: str,
    endpoints: list[zdo_t.SimpleDescriptor],
    device: str | None = None,
    role: str = "router",
    air: VirtualAir | None = None,
    baudrate: int = 115200,
    flow_control: str | None = None,
    manufacturer_code: int = 0x1234,
    database_path: str | None = None,
    network: Any = None,
    security: dict[str, Any] | None = None,
    join: Any = None,
) -> zigpy.application.ControllerApplication:
    """A controller with ``endpoints`` registered before the network starts.

    ``network`` (EZSP only) is a :class:`radios.ezsp.NetworkSettings` for forming; with
    ``air`` and no ``network``, an EZSP stick forms on that air's channel and PAN id.
    ``join`` (EZSP only) is a :class:`radios.ezsp_join.JoinSettings`: the stick joins a
    network as a router instead of forming one.
    ``security`` (virtual only) goes to :func:`radios.virtual.virtual_config`: ``state``
    (the radio's NV file), ``install_code`` or ``link_key`` to join with, ``aps_policy``,
    ``on_key``, ``channels``.
    """
    if kind == "virtual":
        cfg = virtual_config(
            ieee, role=role, air=air, path=device or "virtual://default",
            manufacturer_code=manufacturer_code, **(security or {}),
        )
        cfg[conf.CONF_ADDITIONAL_ENDPOINTS] = [d.as_dict() for d in endpoints]
        return VirtualControllerApplication(cfg)
    if kind == "ezsp":
        from radios.ezsp import NetworkSettings, make_ezsp_controller

        if not device:
            raise ValueError("--radio ezsp needs --device (e.g. /dev/ttyUSB0 or socket://HOST:PORT)")
        if join is not None:
            from radios.ezsp_join import make_joiner_controller

            return make_joiner_controller(device, endpoints=endpoints, join=join,
                                          baudrate=baudrate, flow_control=flow_control,
                                          database_path=database_path)
        if network is None and air is not None:
            # a stick whose radio is this virtual air (the NCP emulator): form its PAN
            network = NetworkSettings(channel=air.channel, pan_id=air.pan_id)
        return make_ezsp_controller(device, endpoints=endpoints, baudrate=baudrate,
                                    flow_control=flow_control, database_path=database_path,
                                    network=network)
    raise ValueError(f"unknown radio kind {kind!r}; choose from {', '.join(RADIO_KINDS)}")


def controller_config_summary(app: zigpy.application.ControllerApplication) -> dict[str, Any]:
    ni = app.state.node_info
    return {"ieee": str(ni.ieee), "nwk": f"0x{int(ni.nwk):04X}",
            "pan_id": f"0x{int(app.state.network_info.pan_id):04X}",
            "channel": int(app.state.network_info.channel)}
