"""The meter on a Silicon Labs EZSP stick through bellows (unmodified).

bellows runs only as coordinator and trust centre (SE 1.x ESP model). Endpoints go in
``additional_endpoints`` so that bellows registers them with EZSP ``addEndpoint`` during
start-up, before the network comes up — the only time the NCP accepts them.

bellows always registers zigpy's default endpoints (1: HA IAS controller, 2: ZLL,
242: Green Power) too, so the SE endpoint must use another number (the meter uses 9 on
EZSP unless told otherwise); see ``sep meter --endpoint``.

Radio settings: ``device`` is a serial path (``/dev/ttyUSB0``), ``socket://HOST:PORT``
(a TCP serial bridge, zigbeed, or the NCP emulator in :mod:`radios.ncp`), with the baud
rate and flow control (``hardware`` = RTS/CTS, ``software``/None = XON/XOFF, which is
what bellows does by default).

Network formation (:class:`NetworkSettings`): when the stick has no network, zigpy forms
one from ``CONF_NWK`` — channel, PAN id, extended PAN id, network key, trust-centre link
key (random where not given); bellows turns it into ``setInitialSecurityState`` +
``formNetwork``. The SE trust-centre policy (``tc_policy``) goes to bellows' EZSP
policies: ``install_code`` admits joiners only with a link key derived from their install
code, which :func:`permit_with_install_code` installs (EZSP ``importTransientKey``)
before opening the network.

Reconnection: zigpy 2.4.0 and bellows 1.2.1 do not reconnect. When the stick goes away
(serial/TCP closed, an ASH ERROR frame, a watchdog failure) bellows calls
``ControllerApplication.connection_lost``, which only emits the ``connection_lost``
listener event (ZHA reacts by reloading the whole integration).
:class:`EzspController` — bellows' application, unchanged, plus this — shuts the dead
session down and starts it again (``startup(auto_form=False)``: the stick keeps its
network, so nothing is formed again) with backoff until the stick answers, keeping the
same application object, so its owner (the meter) goes on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import bellows.types as bt
import bellows.zigbee.application
import zigpy.config as conf
import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from bellows.config import CONF_EZSP_CONFIG, CONF_EZSP_POLICIES, CONF_USE_THREAD
from zigpy.util import convert_install_code

from radios.tasks import cancel_and_wait

LOGGER = logging.getLogger(__name__)

EZSP_SE_ENDPOINT = 9
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds, the last one repeats
# bellows talks to its serial thread through futures that never resolve when that thread's
# loop stopped in between (the line dropped): every step that crosses to it gets a limit
DISCONNECT_TIMEOUT = 5.0  # seconds
STARTUP_TIMEOUT = 60.0  # seconds: a reset, the version exchange, network init

TC_POLICIES = {
    # the trust centre admits joiners that have the preconfigured (global) link key
    "preconfigured": bt.EzspDecisionBitmask.ALLOW_JOINS
    | bt.EzspDecisionBitmask.ALLOW_UNSECURED_REJOINS,
    # SE 1.x: only devices whose install-code link key was given to the TC may join
    "install_code": bt.EzspDecisionBitmask.ALLOW_JOINS
    | bt.EzspDecisionBitmask.JOINS_USE_INSTALL_CODE_KEY,
    # no joins at all
    "closed": bt.EzspDecisionBitmask.DEFAULT_CONFIGURATION,
}


@dataclasses.dataclass(frozen=True)
class NetworkSettings:
    """What the coordinator forms when the stick has no network (None: zigpy picks)."""

    channel: int | None = None
    pan_id: int | None = None
    extended_pan_id: str | None = None  # "aa:bb:..:hh"
    network_key: str | None = None  # 32 hex digits or "aa:bb:.."
    tc_link_key: str | None = None  # default: ZigBeeAlliance09 (zigpy's default)
    tc_policy: str | None = None  # "preconfigured", "install_code", "closed"

    def zigpy_nwk(self) -> dict[str, Any]:
        nwk: dict[str, Any] = {}
        if self.channel is not None:
            nwk[conf.CONF_NWK_CHANNEL] = self.channel
            nwk[conf.CONF_NWK_CHANNELS] = [self.channel]
        if self.pan_id is not None:
            nwk[conf.CONF_NWK_PAN_ID] = self.pan_id
        if self.extended_pan_id is not None:
            nwk[conf.CONF_NWK_EXTENDED_PAN_ID] = self.extended_pan_id
        if self.network_key is not None:
            nwk[conf.CONF_NWK_KEY] = _key(self.network_key)
        if self.tc_link_key is not None:
            nwk[conf.CONF_NWK_TC_LINK_KEY] = _key(self.tc_link_key)
        return nwk

    def ezsp_policies(self) -> dict[str, int]:
        if self.tc_policy is None:
            return {}
        if self.tc_policy not in TC_POLICIES:
            raise ValueError(f"tc_policy must be one of {', '.join(TC_POLICIES)}")
        return {bt.EzspPolicyId.TRUST_CENTER_POLICY.name: int(TC_POLICIES[self.tc_policy])}


def _key(text: str) -> list[int]:
    raw = bytes.fromhex(text.replace(":", "").replace(" ", ""))
    if len(raw) != 16:
        raise ValueError(f"a key has 16 bytes, not {len(raw)}")
    return list(raw)


def ezsp_config(device: str, *, endpoints: list[zdo_t.SimpleDescriptor], baudrate: int = 115200,
                flow_control: str | None = None, database_path: str | None = None,
                network: NetworkSettings | None = None, use_thread: bool = True,
                watchdog: bool = True, key_table_size: int | None = None) -> dict:
    """bellows' configuration. ``key_table_size``: link keys the stick keeps (bellows asks
    for at least 4; an SE trust centre holds one Key Establishment key per device, so a
    hub asks for more — a stick built with a smaller table keeps its own)."""
    device_cfg: dict = {conf.CONF_DEVICE_PATH: device, conf.CONF_DEVICE_BAUDRATE: baudrate}
    if flow_control:
        device_cfg[conf.CONF_DEVICE_FLOW_CONTROL] = flow_control
    network = network or NetworkSettings()
    cfg: dict[str, Any] = {
        conf.CONF_DEVICE: device_cfg,
        conf.CONF_DATABASE: database_path,
        conf.CONF_ADDITIONAL_ENDPOINTS: [d.as_dict() for d in endpoints],
        conf.CONF_OTA: {conf.CONF_OTA_ENABLED: False},
        conf.CONF_TOPO_SCAN_ENABLED: False,
        conf.CONF_NWK_BACKUP_ENABLED: False,
        conf.CONF_STARTUP_ENERGY_SCAN: False,
        conf.CONF_WATCHDOG_ENABLED: watchdog,
        CONF_USE_THREAD: use_thread,
    }
    if nwk := network.zigpy_nwk():
        cfg[conf.CONF_NWK] = nwk
    if policies := network.ezsp_policies():
        cfg[CONF_EZSP_POLICIES] = policies
    if key_table_size is not None:
        cfg[CONF_EZSP_CONFIG] = {bt.EzspConfigId.CONFIG_KEY_TABLE_SIZE.name: key_table_size}
    return cfg


class EzspController(bellows.zigbee.application.ControllerApplication):
    """bellows' ControllerApplication (its code unchanged) that reconnects to the stick."""

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.reconnect_delays = RECONNECT_DELAYS
        self._cbke_keys: dict[t.EUI64, bytes] = {}  # the stick's key table, as we set it
        # which (profile, cluster) must travel APS-encrypted (the owner's policy, e.g. SE's):
        # the NCP firmware knows no such rule, so the host marks each frame (as the virtual
        # radio's node does with its own policy)
        self.aps_policy: Callable[[int, int], bool] | None = None

    # -- bellows behaviours worked around here ----------------------------------------
    async def _reset(self) -> None:
        # An NCP forgets its endpoints when it resets (UG100 addEndpoint) and accepts new
        # ones only until the network is up. bellows adds them in connect() only, so after
        # the reset that ends forming the stick would serve no endpoint (ZDO Match_Desc
        # finds nothing) until the next restart. Add them again after every reset.
        await super()._reset()
        self._created_device_endpoints.clear()
        await self.register_endpoints()

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        # zigpy interviews the coordinator like any device and reads the attributes of its
        # OTA client (the meter's); the NCP loops that unicast back to the host, where no
        # zigpy server answers a server-to-client frame: 3 x 5 s of timeouts at every
        # start. Refuse such self-addressed frames at once (zigpy moves on).
        if (self.state.node_info is not None and packet.dst is not None
                and packet.dst.addr_mode == t.AddrMode.NWK
                and packet.dst.address == self.state.node_info.nwk
                and packet.profile_id != 0 and _zcl_server_to_client(packet)):
            raise zigpy.exceptions.DeliveryError(
                "the coordinator does not answer ZCL frames to its own client clusters")
        if self._ezsp is None or not self.is_controller_running:
            # bellows raises ControllerError; to a sender this is a failed delivery
            raise zigpy.exceptions.DeliveryError("the EZSP stick is not connected")
        if (self.aps_policy is not None and packet.dst is not None
                and packet.dst.addr_mode in (t.AddrMode.NWK, t.AddrMode.IEEE)
                and self.aps_policy(int(packet.profile_id), int(packet.cluster_id))):
            packet = packet.replace(
                tx_options=packet.tx_options | t.TransmitOptions.APS_Encryption)
        await super().send_packet(packet)

    # -- link keys from Key Establishment ------------------------------------------------
    # A stick has no "kind" of key: those this controller put in the key table (and, on a
    # router, those it found there) are Key Establishment's.
    def has_link_key(self, partner: t.EUI64, kind: str | None = None) -> bool:
        return t.EUI64(partner) in self._cbke_keys

    async def install_link_key(self, partner: t.EUI64, key: bytes, kind: str = "cbke") -> None:
        """Key Establishment's key into the stick's key table (``importLinkKey``): the NCP
        APS-secures with it from now on, and keeps it across resets."""
        ezsp = self._ezsp
        if ezsp is None:
            raise zigpy.exceptions.DeliveryError("the EZSP stick is not connected")
        partner = t.EUI64(partner)
        (index,) = await ezsp.findKeyTableEntry(address=partner, linkKey=True)
        if index == 0xFF:  # a new partner: the first empty slot (a stick overwrites the
            index = await self._free_key_slot(ezsp)  # index it is given, whoever's it was)
        (status,) = await ezsp.importLinkKey(index=index, address=partner, key=t.KeyData(key))
        if bt.sl_Status.from_ember_status(status) != bt.sl_Status.OK:
            raise zigpy.exceptions.ControllerException(f"importLinkKey: {status!r}")
        self._cbke_keys[partner] = bytes(key)

    @staticmethod
    async def _free_key_slot(ezsp: Any) -> int:
        (_status, size) = await ezsp.getConfigurationValue(
            configId=bt.EzspConfigId.CONFIG_KEY_TABLE_SIZE)
        for index in range(size):
            *_, status = await ezsp.exportLinkKeyByIndex(index=index)
            if bt.sl_Status.from_ember_status(status) != bt.sl_Status.OK:
                return index
        return size  # none: the stick refuses the index (INVALID_INDEX), and says so

    def forget_link_key(self, partner: t.EUI64) -> None:
        partner = t.EUI64(partner)
        self._cbke_keys.pop(partner, None)
        ezsp = self._ezsp
        if ezsp is None:
            return

        async def erase() -> None:
            (index,) = await ezsp.findKeyTableEntry(address=partner, linkKey=True)
            if index != 0xFF:
                await ezsp.eraseKeyTableEntry(index=index)

        task = asyncio.get_running_loop().create_task(erase())
        task.add_done_callback(lambda f: f.cancelled() or f.exception())


    async def permit_with_link_keys(self, keys: dict[t.EUI64, bytes], time_s: int = 60) -> None:
        """Admit each device with its link key (transient keys) and open the network once:
        bellows' ``permit_with_link_key`` broadcasts a permit per device."""
        ezsp = self._ezsp
        if ezsp is None:
            raise zigpy.exceptions.ControllerException("the EZSP stick is not connected")
        for node, key in keys.items():
            status = await ezsp.add_transient_link_key(t.EUI64(node), t.KeyData(key))
            if bt.sl_Status.from_ember_status(status) != bt.sl_Status.OK:
                raise zigpy.exceptions.ControllerException(f"transient key for {node}: {status!r}")
        await ezsp.setPolicy(policyId=bt.EzspPolicyId.TRUST_CENTER_POLICY,
                             decisionId=TC_POLICIES["install_code"])
        await self.permit(time_s)

    @property
    def reconnecting(self) -> bool:
        return self._reconnect_task is not None and not self._reconnect_task.done()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._closing or self.reconnecting:
            return
        LOGGER.warning("EZSP stick lost (%r); reconnecting", exc)
        self._reconnect_task = asyncio.get_running_loop().create_task(
            self._reconnect(), name="ezsp-reconnect")

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            with contextlib.suppress(Exception):
                await super().shutdown(db=False)
            delay = self.reconnect_delays[min(attempt, len(self.reconnect_delays) - 1)]
            await asyncio.sleep(delay)
            attempt += 1
            try:
                async with asyncio.timeout(STARTUP_TIMEOUT):
                    await super().startup(auto_form=False)
            except Exception as exc:  # noqa: BLE001 - keep trying until the stick is back
                LOGGER.info("EZSP reconnect attempt %d failed: %r", attempt, exc)
                continue
            self.reconnects += 1
            LOGGER.warning("EZSP stick back after %d attempt(s)", attempt)
            return

    async def disconnect(self) -> None:
        """bellows' disconnect, bounded. bellows stops its serial thread's loop when the
        line drops; a disconnect sent to that thread just then is queued on a loop that
        never runs it again, and waiting for it would wait for ever. The old EZSP object is
        then dropped: the next connect makes a new one, on a new thread."""
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT):
                await super().disconnect()
        except TimeoutError:
            LOGGER.warning("EZSP: the old serial line did not close within %.0f s; "
                           "dropping it", DISCONNECT_TIMEOUT)
            self._ezsp = None

    async def wait_reconnected(self) -> None:
        """Wait until a reconnection in progress has finished (tests, supervisors)."""
        if self._reconnect_task is not None:
            await asyncio.shield(self._reconnect_task)

    async def startup(self, *, auto_form: bool = False) -> None:
        self._closing = False
        await super().startup(auto_form=auto_form)

    async def shutdown(self, *, db: bool = True) -> None:
        if self._reconnect_task is not None and asyncio.current_task() is self._reconnect_task:
            await super().shutdown(db=db)  # zigpy's startup cleaning up a failed attempt
            return
        self._closing = True
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait([task], 10)
        await super().shutdown(db=db)


def _zcl_server_to_client(packet: t.ZigbeePacket) -> bool:
    data = packet.data.serialize() if packet.data is not None else b""
    return bool(data) and bool(data[0] & 0x08)


def make_ezsp_controller(device: str, *, endpoints: list[zdo_t.SimpleDescriptor],
                         baudrate: int = 115200, flow_control: str | None = None,
                         database_path: str | None = None,
                         network: NetworkSettings | None = None,
                         use_thread: bool = True,
                         key_table_size: int | None = None) -> EzspController:
    cfg = ezsp_config(device, endpoints=endpoints, baudrate=baudrate, flow_control=flow_control,
                      database_path=database_path, network=network, use_thread=use_thread,
                      key_table_size=key_table_size)
    return EzspController(cfg)


async def permit_with_install_code(app: bellows.zigbee.application.ControllerApplication,
                                   ieee: str | t.EUI64, install_code: bytes | str,
                                   time_s: int = 60) -> None:
    """Open the network to one device with the link key of its install code (SE joins).

    The install code (with its CRC) is hashed to the link key (AES-MMO, zigpy's
    ``convert_install_code``); bellows imports it as a transient key and sets the TC
    policy to install-code joins (``permit_with_link_key``).
    """
    code = bytes.fromhex(install_code) if isinstance(install_code, str) else install_code
    key = convert_install_code(code)
    if key is None:
        raise ValueError("invalid install code (length or CRC)")
    await app.permit_with_link_key(t.EUI64.convert(str(ieee)), key, time_s=time_s)
