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
from collections.abc import Callable

import zigpy.application
import zigpy.config as conf
import zigpy.device
import zigpy.zdo.types as zdo_t

from hubsim.mirror import MirrorHost
from hubsim.ota_server import HubOtaServer, OtaServerCore
from hubsim.prepay_supplier import PrepaySupplier
from hubsim.supplier import Supplier
from hubsim.zigpy_se import install_se_profile_shim
from radios.air import VirtualAir
from radios.virtual import VirtualControllerApplication, virtual_config
from sep.clusters.price import PriceServer
from sep.meter.tariff import Tariff

LOGGER = logging.getLogger(__name__)
HUB_SE_ENDPOINT = 9


class CommsHub:
    def __init__(self, *, ieee: str = "00:0d:6f:00:00:00:00:01", air: VirtualAir | None = None,
                 device: str | None = None, ota: OtaServerCore | None = None,
                 clock: Callable[[], float] = time.time, supplier: bool = True,
                 tariff: Tariff | None = None, role: str = "coordinator",
                 mirrors: bool = False, gas_tariff: Tariff | None = None) -> None:
        # role "router": the hub joins a network whose coordinator is the meter (an ESP on
        # an EZSP stick, the SE 1.x model); it then interviews nothing by itself.
        cfg = virtual_config(ieee, role=role, air=air, path=device or "virtual://default",
                             default_endpoints=True)
        # Besides zigpy's own endpoints, the hub's Smart Energy endpoint: where the HAN
        # finds its OTA server and the supplier's prices and messages.
        # The supplier's ESI: Messaging, and Price when the supplier has a tariff to publish.
        in_clusters = [0x000A, 0x0019] + ([0x0703] if supplier else []) + (
            [0x0700] if supplier and tariff is not None else [])
        cfg[conf.CONF_ADDITIONAL_ENDPOINTS] = [zdo_t.SimpleDescriptor(
            endpoint=HUB_SE_ENDPOINT, profile=0x0109, device_type=0x0500, device_version=0,
            input_clusters=in_clusters, output_clusters=[0x0702]).as_dict()]
        self.app: zigpy.application.ControllerApplication = VirtualControllerApplication(cfg)
        install_se_profile_shim(self.app)
        self.supplier: Supplier | None = None
        if supplier:
            self.supplier = Supplier(self.app, endpoint=HUB_SE_ENDPOINT, clock=clock,
                                     tariff=tariff)
        self.ota: HubOtaServer | None = None
        if ota is not None:
            self.ota = HubOtaServer(self.app, ota, endpoint=HUB_SE_ENDPOINT)
        # Metering mirrors for battery meters (gas), with the Gas Proxy Function's gas price.
        self.mirrors: MirrorHost | None = None
        if mirrors:
            gas_price = PriceServer(tariff=gas_tariff) if gas_tariff is not None else None
            self.mirrors = MirrorHost(self.app, endpoint=HUB_SE_ENDPOINT, clock=clock,
                                      price=gas_price)
        # The supplier's prepayment commands to meters, and its top-up code vending.
        code_format = tariff.prepayment.top_up_code if tariff and tariff.prepayment else None
        self.prepay = PrepaySupplier(self.app, clock=clock, code_format=code_format,
                                     provider_id=tariff.provider_id if tariff else 0x0000ABCD)
        self.joined: list[str] = []
        self.app.add_listener(self)

    async def start(self) -> None:
        await self.app.startup(auto_form=True)
        if self.supplier is not None:
            await self.supplier.start()
        if self.mirrors is not None:
            await self.mirrors.start()

    async def stop(self) -> None:
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

    async def wait_interviewed(self, ieee: str, timeout: float = 20.0) -> zigpy.device.Device:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for dev in self.app.devices.values():
                if str(dev.ieee) == ieee and dev.is_initialized and dev.model:
                    return dev
            await asyncio.sleep(0.05)
        raise TimeoutError(f"hub did not finish interviewing {ieee}")
