"""The comms hub: coordinator and trust centre of the simulated HAN.

It is zigpy itself, configured as ZHA configures it (zigpy's default endpoints), so the
meter is interviewed exactly the way ZHA interviews a device: Node Descriptor, Active
Endpoints, Simple Descriptors, then Basic manufacturer/model. Its SE endpoint carries the
OTA server (optional) and the supplier's ESI (Price and Messaging, ``hubsim/supplier.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import zigpy.application
import zigpy.config as conf
import zigpy.device
import zigpy.types
import zigpy.zdo.types as zdo_t

from hubsim import ke_node
from hubsim.hub_services import HUB_SERVICE_CLUSTERS, HubServices
from hubsim.mirror import MirrorHost, mirror_descriptors
from hubsim.ota_server import HubOtaServer, OtaServerCore
from hubsim.prepay_supplier import PrepaySupplier
from hubsim.supplier import Supplier
from hubsim.zigpy_se import install_se_profile_shim
from radios.air import VirtualAir
from radios.virtual import VirtualControllerApplication, virtual_config
from sep.clusters.price import PriceServer
from sep.meter.tariff import Tariff
from sep.security.certs import Credentials
from sep.zcl.security import requires_aps_security

LOGGER = logging.getLogger(__name__)
HUB_SE_ENDPOINT = 9
HUB_KEY_TABLE_SIZE = 64  # one CBKE key per HAN device (a real stick keeps what its build allows)


class CommsHub:
    def __init__(self, *, ieee: str = "00:0d:6f:00:00:00:00:01", air: VirtualAir | None = None,
                 device: str | None = None, ota: OtaServerCore | None = None,
                 clock: Callable[[], float] = time.time, supplier: bool = True,
                 tariff: Tariff | None = None, role: str = "coordinator",
                 install_codes: dict[str, bytes] | None = None, state: str | None = None,
                 install_code: bytes | None = None, link_key: bytes | None = None,
                 permit_join: float = 254, keep_alive_base: int = 10,
                 keep_alive_jitter: int = 300, mirrors: bool = False,
                 gas_tariff: Tariff | None = None,
                 credentials: Sequence[Credentials] = (), radio: str = "virtual",
                 network: Any = None) -> None:
        # role "coordinator" (SMETS2): the hub is coordinator and trust centre; with
        # ``install_codes`` it admits only those devices (SE: install_code policy), and
        # permits joining for ``permit_join`` seconds once up. Without codes it runs the
        # development network (radios.virtual.virtual_config).
        # role "router": the hub joins a network whose coordinator is the meter (an ESP on
        # an EZSP stick, the SE 1.x model) with ``install_code`` or ``link_key``; it then
        # interviews nothing by itself.
        # with CBKE credentials: Key Establishment on the SE endpoint, and SE frames taken
        # only under its link keys (hubsim/ke_node.py)
        # radio "ezsp": the hub runs on unmodified bellows on a stick at ``device``
        # (coordinator and trust centre, forming ``network``, a radios.ezsp.NetworkSettings);
        # the install codes go to the stick as transient keys once it is up. The stick's
        # firmware cannot tell which link key opened a frame, so SE frames are taken under
        # any APS link key (install code or CBKE) there.
        security: dict = {"aps_policy": requires_aps_security, "state": state,
                          **ke_node.radio_security(credentials)}
        if role == "coordinator" and install_codes is not None:
            security.update(tc_policy="install_code", permit_join=permit_join,
                            install_codes={k: bytes(v).hex() for k, v in install_codes.items()})
        elif role != "coordinator":
            security.update(install_code=install_code, link_key=link_key)
        # Besides zigpy's own endpoints, the hub's Smart Energy endpoint: where the HAN
        # finds its OTA server and the supplier's prices and messages.
        # The supplier's ESI: Messaging, and Price when the supplier has a tariff to publish.
        in_clusters = [0x000A, 0x0019] + ([0x0703] if supplier else []) + (
            [0x0700] if supplier and tariff is not None else [])
        in_clusters += list(HUB_SERVICE_CLUSTERS)  # Calendar, Device Management, Keep-Alive
        se_endpoint = zdo_t.SimpleDescriptor(
            endpoint=HUB_SE_ENDPOINT, profile=0x0109, device_type=0x0500, device_version=0,
            input_clusters=ke_node.with_ke(in_clusters, credentials),
            output_clusters=ke_node.with_ke([0x0702, 0x0709], credentials))
        self._install_codes = dict(install_codes or {}) if radio == "ezsp" else {}
        self._permit_join = permit_join
        if radio == "ezsp":
            from radios.ezsp import make_ezsp_controller

            if role != "coordinator" or not device:
                raise ValueError("a hub on EZSP is the coordinator, on a stick at device")
            mirror_eps = mirror_descriptors(price=gas_tariff is not None) if mirrors else []
            self.app: zigpy.application.ControllerApplication = make_ezsp_controller(
                device, endpoints=[se_endpoint, *mirror_eps], network=network,
                key_table_size=HUB_KEY_TABLE_SIZE)
            self.app.aps_policy = requires_aps_security  # type: ignore[attr-defined]
        else:
            cfg = virtual_config(ieee, role=role, air=air, path=device or "virtual://default",
                                 default_endpoints=True, **security)
            cfg[conf.CONF_ADDITIONAL_ENDPOINTS] = [se_endpoint.as_dict()]
            self.app = VirtualControllerApplication(cfg)
        install_se_profile_shim(self.app)
        self.supplier: Supplier | None = None
        if supplier:
            self.supplier = Supplier(self.app, endpoint=HUB_SE_ENDPOINT, clock=clock,
                                     tariff=tariff)
        supplier_tariff = self.supplier.price if self.supplier is not None else None
        self.services = HubServices(
            self.app, endpoint=HUB_SE_ENDPOINT, clock=clock,
            tariff=lambda: supplier_tariff.tariff if supplier_tariff is not None else None,
            keep_alive_base=keep_alive_base, keep_alive_jitter=keep_alive_jitter)
        self.ota: HubOtaServer | None = None
        if ota is not None:
            self.ota = HubOtaServer(self.app, ota, endpoint=HUB_SE_ENDPOINT)
        # Metering mirrors for battery meters (gas), with the Gas Proxy Function's gas price.
        self.mirrors: MirrorHost | None = None
        if mirrors:
            gas_price = PriceServer(tariff=gas_tariff) if gas_tariff is not None else None
            self.mirrors = MirrorHost(self.app, endpoint=HUB_SE_ENDPOINT, clock=clock,
                                      price=gas_price, preregistered=radio == "ezsp")
        # The supplier's prepayment commands to meters, and its top-up code vending.
        code_format = tariff.prepayment.top_up_code if tariff and tariff.prepayment else None
        self.prepay = PrepaySupplier(self.app, clock=clock, code_format=code_format,
                                     provider_id=tariff.provider_id if tariff else 0x0000ABCD)
        self.joined: list[str] = []
        self.app.add_listener(self)
        self.ke = ke_node.attach(self.app, credentials, endpoint=HUB_SE_ENDPOINT, ieee=ieee)

    async def start(self) -> None:
        await self.app.startup(auto_form=True)
        LOGGER.info("hub up: %s", self.app.state.node_info.ieee)
        if self._install_codes:  # a stick: the installer's codes become transient keys
            from radios.crypto import link_key_from_install_code

            await self.app.permit_with_link_keys(  # type: ignore[attr-defined]
                {zigpy.types.EUI64.convert(ieee): link_key_from_install_code(bytes(code))
                 for ieee, code in self._install_codes.items()},
                time_s=int(min(self._permit_join, 254)))
        if self.ke is not None:
            self.ke.start()
        if self.supplier is not None:
            await self.supplier.start()
        await self.services.start()
        if self.mirrors is not None:
            await self.mirrors.start()

    async def stop(self) -> None:
        if self.ke is not None:
            await self.ke.stop()
        await self.services.stop()
        if self.mirrors is not None:
            await self.mirrors.stop()
        if self.supplier is not None:
            await self.supplier.stop()
        await self.app.shutdown()

    # zigpy application listener events
    def device_joined(self, device: zigpy.device.Device) -> None:
        LOGGER.info("hub: %s joined", device.ieee)
        self.joined.append(str(device.ieee))

    def device_initialized(self, device: zigpy.device.Device) -> None:
        LOGGER.info("hub: interviewed %s %s %s", device.ieee, device.manufacturer, device.model)

    def raw_device_initialized(self, device: zigpy.device.Device) -> None:
        pass

    def admit(self, ieee: str, install_code: bytes, seconds: int = 254) -> None:
        """Register a device's install code (the installer's step) and open the network."""
        node = getattr(self.app, "node", None)
        if node is None:
            raise RuntimeError("the hub is not up")
        node.add_install_code(int(ieee.replace(":", ""), 16), install_code)
        node.permit(float(seconds))

    async def wait_interviewed(self, ieee: str, timeout: float = 20.0) -> zigpy.device.Device:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for dev in self.app.devices.values():
                if str(dev.ieee) == ieee and dev.is_initialized and dev.model:
                    return dev
            await asyncio.sleep(0.05)
        raise TimeoutError(f"hub did not finish interviewing {ieee}")
