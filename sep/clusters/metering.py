"""Metering server: reading information set, tiers, history, load profile, snapshots,
sampling, maximum demand, bills, alarm masks, fast poll and supply control (SE 1.4 D.3).

Registers are kept in Wh and W; with Multiplier 1 and Divisor 1000 the HAN sees kWh and
kW (value x Multiplier / Divisor in the UnitOfMeasure, here kWh/kW binary). The
formatting bytes tell a display how many digits to show: bits 0-2 digits right of the
decimal point, bits 3-6 digits left of it, bit 7 suppress leading zeros.

Block information (CurrentTierNBlockMSummationDelivered, the block period attributes) is
served only while a block tariff is active (:meth:`MeteringServer.set_block_period`); the
received side likewise while an export tariff with blocks is
(:meth:`MeteringServer.set_received_block_period`). The billing set (bill to date,
projected bill, SE 1.4 D.3.2.2.10; :mod:`sep.meter.billing`) is served while the tariff
has a billing period (its received half with an export tariff). Maximum demand follows
:mod:`sep.meter.demand` over DemandIntegrationPeriod minutes. Snapshots and their
schedules are in :mod:`sep.clusters.metering_snapshots`, sampling sessions in
:mod:`sep.clusters.metering_sampling`.

The alarm masks (D.3.2.2.13: GenericAlarmMask, ElectricityAlarmMask,
GenericFlowPressureAlarmMask, ExtendedGenericAlarmMask, ManufacturerAlarmMask) are
writable by any HAN client, all alarms enabled by default, and kept by the store;
ExtendedStatus (0x0204) shows NV memory, measurement system, relay and load-limit faults.
Supply commands that change the relay (ChangeSupply, SetSupplyStatus,
ResetLoadLimitCounter) are obeyed only from ``MeteringConfig.supply_authorities`` (the
trust centre); every supply switch is reported (SupplyStatus, Status) even when it is
undone before the next sampled report (:class:`SwitchReporter`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import zigpy.types as t
from zigpy.zcl import foundation

from sep.clusters.base import ClusterServer
from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.clusters.metering_sampling import SamplingMixin
from sep.clusters.metering_snapshots import (
    CAUSE_END_OF_BILLING_PERIOD,
    MAX_SNAPSHOTS,
    Bill,
    Snapshot,
    SnapshotMixin,
)
from sep.clusters.reporting import Reporter
from sep.meter.billing import BillAccumulator, ClosedBill, PriceSource, units
from sep.meter.blocks import BlockRegisters
from sep.meter.load_profile import CHANNELS, LoadProfile
from sep.meter.registers import MAX_TIERS, RegisterSet
from sep.meter.supply import CANCEL, Refused, SupplyControl, SupplyStatus
from sep.metrology.api import MetrologyStatus, Reading
from sep.zcl.frames import Request, Status, build_frame, response_header
from sep.zcl.metering import (
    BLOCK_DELIVERED_BASE,
    BLOCK_RECEIVED_BASE,
    MAX_BLOCK_TIERS,
    MAX_BLOCKS,
    Metering,
    history_attr_id,
)

# Metering Status (0x0200) bits for electricity meters, SE 1.4 D.3.2.2.2
STATUS_CHECK_METER = 0x01
STATUS_LOW_BATTERY = 0x02
STATUS_TAMPER_DETECT = 0x04
STATUS_POWER_FAILURE = 0x08
STATUS_POWER_QUALITY = 0x10
STATUS_LEAK_DETECT = 0x20
STATUS_SERVICE_DISCONNECT_OPEN = 0x40

# Interval channels (SE 1.4 GetProfile): 0 consumption delivered, 1 consumption received,
# 2/3 reactive consumption delivered/received (defined, not recorded by this meter),
# 4.. reserved/undefined.
INTERVAL_CHANNELS_DEFINED = 4

# GetProfileResponse status (SE 1.4 D.3.2.4.1.1)
PROFILE_SUCCESS = 0x00
PROFILE_UNDEFINED_CHANNEL = 0x01
PROFILE_CHANNEL_NOT_SUPPORTED = 0x02
PROFILE_INVALID_END_TIME = 0x03
PROFILE_TOO_MANY_PERIODS = 0x04
PROFILE_NO_INTERVALS = 0x05

MAX_PERIODS_DELIVERED = 24
FAST_POLL_PERIOD_S = 2  # the fastest update period the meter supports (attribute 0x000B)
FAST_POLL_MAX_MINUTES = 15  # SE: fast poll mode lasts at most 15 minutes

TRUST_CENTRE_NWK = 0x0000

# Alarm masks (SE 1.4 D.3.2.2.13) served on an electricity meter, and their defaults: every
# alarm of the group enabled.
ALARM_MASKS = {0x0800: 0xFFFF, 0x0801: 0xFFFFFFFF, 0x0802: 0xFFFF, 0x0806: 0xFFFFFFFFFFFF,
               0x0807: 0xFFFF}
# ExtendedStatus (0x0204) bits, SE 1.4 D.3.2.2.2 (zigpy's ``ExtendedStatus``)
EXT_NV_MEMORY_ERROR = 0x20
EXT_MEASUREMENT_SYSTEM_ERROR = 0x40
EXT_SUPPLY_DISCONNECT_FAILURE = 0x100
EXT_SUPPLY_CONNECT_FAILURE = 0x200
EXT_LIMIT_THRESHOLD_EXCEEDED = 0x08000000


def formatting(left: int, right: int, suppress_leading_zeros: bool = True) -> int:
    if not (0 <= left <= 15 and 0 <= right <= 7):
        raise ValueError("left digits 0..15, right digits 0..7")
    return (0x80 if suppress_leading_zeros else 0) | (left << 3) | right


def from_zcl_time(value: int) -> int:
    return int(value) + ZIGBEE_EPOCH


@dataclasses.dataclass(frozen=True)
class MeteringConfig:
    multiplier: int = 1
    divisor: int = 1000
    unit_of_measure: int = 0x00  # kWh (binary)
    summation_formatting: int = formatting(7, 3)  # 0xBB: up to 9,999,999.999 kWh
    demand_formatting: int = formatting(5, 3)  # 0xAB: up to 99,999.999 kW
    device_type: int = 0x00  # electric metering
    profile_period_code: int = 2  # 30 minutes
    tiers_in_use: int = 4
    historical_formatting: int = formatting(5, 3)  # 0xAB: day/week/month consumption
    demand_integration_minutes: int = 5  # DemandIntegrationPeriod: maximum demand's period
    #: NWK addresses whose ChangeSupply / ResetLoadLimitCounter are obeyed: the trust
    #: centre (the comms hub, the HAN's energy service interface). Empty: none over the HAN.
    supply_authorities: frozenset[int] = frozenset({TRUST_CENTRE_NWK})


class SwitchReporter(Reporter):
    """Attribute reporting that reports every value an attribute passed through.

    The periodic reporter samples values, so a relay that opens and is restored between
    two samples would never be reported. Values queued with :meth:`queue` (every supply
    switch) go out one per attribute per round, in order, to every destination that
    configured reporting of the attribute; the plain sampled reports follow once the
    queue of that attribute is empty."""

    def __init__(self, server: ClusterServer) -> None:
        super().__init__(server)
        self.queued: dict[int, list[Any]] = {}

    def queue(self, attr_id: int, value: Any) -> None:
        if any(cfg.attr_id == attr_id for cfg in self.configs.values()):
            self.queued.setdefault(attr_id, []).append(value)

    def due(self, now: float) -> dict[tuple[int, int], bytes]:
        out: dict[tuple[int, int], bytes] = {}
        held = {}
        for attr_id, values in list(self.queued.items()):
            value = values.pop(0)
            if not values:
                del self.queued[attr_id]
            d = self.server.defs[attr_id]
            rec = foundation.Attribute(attrid=attr_id, value=foundation.TypeValue(
                type=d.zcl_type, value=d.type(value))).serialize()
            for key, cfg in list(self.configs.items()):
                if cfg.attr_id != attr_id:
                    continue
                cfg.last_time, cfg.last_value = now, value
                dst = (cfg.dst_nwk, cfg.dst_ep)
                out[dst] = out.get(dst, b"") + rec
                held[key] = self.configs.pop(key)  # no sampled report of it this round
        try:
            for dst, payload in super().due(now).items():
                out[dst] = out.get(dst, b"") + payload
        finally:
            self.configs.update(held)
        return out


class MeteringServer(SnapshotMixin, SamplingMixin, ClusterServer):
    cluster = Metering
    reportable = frozenset({0x0000, 0x0001, 0x000C, 0x000E, 0x0014, 0x0200, 0x0400})
    #: GetProfileResponse, RequestFastPollModeResponse, ScheduleSnapshotResponse,
    #: TakeSnapshotResponse, PublishSnapshot, GetSampledDataResponse,
    #: SupplyStatusResponse, StartSamplingResponse
    generated = frozenset({0x00, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D})

    def __init__(self, config: MeteringConfig | None = None, *,
                 supply: SupplyControl | None = None,
                 profile: LoadProfile | None = None) -> None:
        super().__init__()
        cfg = config or MeteringConfig()
        if not 1 <= cfg.tiers_in_use <= MAX_TIERS:
            raise ValueError(f"tiers_in_use 1..{MAX_TIERS}")
        self.config = cfg
        self.reading: Reading | None = None
        self.extra_status = 0  # faults reported by other parts (store integrity ...)
        self.store_fault = False  # the store found corrupt data (ExtendedStatus NV error)
        self.registers = RegisterSet(demand_period_s=60 * cfg.demand_integration_minutes)
        self.profile = profile or LoadProfile(cfg.profile_period_code)
        self.supply = supply or SupplyControl()
        self.reporter: SwitchReporter = SwitchReporter(self)
        self.supply.on_switch = self._supply_switched
        self._init_snapshots()
        self._init_sampling()
        #: prices for the billing set (the Price server; None: no bills kept)
        self.price_source: PriceSource | None = None
        self.bill = BillAccumulator()
        self.bill_received = BillAccumulator(received=True)
        self.on_bill: Callable[[ClosedBill], None] | None = None  # a billing period closed
        self.on_alarm_masks: Callable[[dict[int, int]], None] | None = None  # the store
        self.fast_poll_until = 0
        self.values.update({
            0x000A: 30,  # DefaultUpdatePeriod (s)
            0x000B: FAST_POLL_PERIOD_S,
            0x000F: cfg.profile_period_code,
            0x0300: cfg.unit_of_measure,
            0x0301: cfg.multiplier,
            0x0302: cfg.divisor,
            0x0303: cfg.summation_formatting,
            0x0304: cfg.demand_formatting,
            0x0305: cfg.historical_formatting,
            0x0306: cfg.device_type,
            0x0500: MAX_PERIODS_DELIVERED,
            0x0602: cfg.demand_integration_minutes,  # DemandIntegrationPeriod
            0x0603: 1,  # NumberOfDemandSubintervals
            **ALARM_MASKS,
        })
        for mask in ALARM_MASKS:
            self.on_write[mask] = lambda value: self._masks_changed()
        g = self.getters
        g[0x0000] = lambda: self._reading().delivered_wh
        g[0x0001] = lambda: self._reading().received_wh
        g[0x0400] = lambda: self._reading().demand_w
        g[0x0200] = self._meter_status
        g[0x0014] = lambda: int(self.supply.status)
        g[0x0020] = lambda: self.registers.active_tier  # ActiveRegisterTierDelivered
        g[0x0021] = lambda: self.registers.active_received_tier  # ...Received
        g[0x0204] = self._extended_status
        demand = self.registers.demand
        g[0x0002] = lambda: self._trusted(demand.max_delivered[0] if demand.max_delivered else 0)
        g[0x0003] = lambda: self._trusted(demand.max_received[0] if demand.max_received else 0)
        g[0x0008] = lambda: to_zcl_time(demand.max_delivered[1]) if demand.max_delivered \
            else 0xFFFFFFFF
        g[0x0009] = lambda: to_zcl_time(demand.max_received[1]) if demand.max_received \
            else 0xFFFFFFFF
        g[0x040D] = lambda: self._trusted(demand.day_max(self._now()))
        g[0x040E] = lambda: self._trusted(demand.previous_day_max(self._now()))
        g[0x040F] = lambda: self._trusted(demand.month_max(self._now()))
        g[0x0410] = lambda: self._trusted(demand.year_max(self._now()))
        g[0x0601] = lambda: self.supply.demand_limit_w or 0
        g[0x0604] = lambda: self.supply.arm_duration_s
        g[0x0605] = lambda: int(self.supply.load_limit_state)
        g[0x0606] = lambda: self.supply.load_limit_counter
        g[0x0607] = lambda: int(self.supply.tamper_state)  # set by SetSupplyStatus
        g[0x0608] = lambda: int(self.supply.depletion_state)
        g[0x0609] = lambda: int(self.supply.uncontrolled_flow_state)
        g[0x0B00] = lambda: (to_zcl_time(self.supply.pending.implementation_time)
                             if self.supply.pending else 0xFFFFFFFF)
        g[0x0B01] = lambda: int(self.supply.pending.status if self.supply.pending
                                else self.supply.status)
        for n in range(cfg.tiers_in_use):
            g[0x0100 + 2 * n] = lambda n=n: self._trusted(self.registers.tiers_delivered[n])
            g[0x0101 + 2 * n] = lambda n=n: self._trusted(self.registers.tiers_received[n])
        reg = self.registers
        g[0x0401] = lambda: self._trusted(reg.day.current[0])
        g[0x0402] = lambda: self._trusted(reg.day.current[1])
        g[0x0403] = lambda: self._trusted(reg.day.previous[0])
        g[0x0404] = lambda: self._trusted(reg.day.previous[1])
        g[0x0405] = lambda: to_zcl_time(self.profile.current_start or 0)
        g[0x0406] = lambda: to_zcl_time(self.profile.current_start or 0)
        g[0x0407] = lambda: self._trusted(self.profile.current[0])
        g[0x0408] = lambda: self._trusted(self.profile.current[1])
        for n in range(2, 9):  # PreviousDay<n>Consumption{Delivered,Received}
            for k in (0, 1):
                g[0x0420 + 2 * (n - 2) + k] = lambda n=n, k=k: self._trusted(reg.day.back(n)[k])
        g[0x0430] = lambda: self._trusted(reg.week.current[0])
        g[0x0431] = lambda: self._trusted(reg.week.current[1])
        g[0x0432] = lambda: self._trusted(reg.week.previous[0])
        g[0x0433] = lambda: self._trusted(reg.week.previous[1])
        g[0x0440] = lambda: self._trusted(reg.month.current[0])
        g[0x0441] = lambda: self._trusted(reg.month.current[1])
        g[0x0442] = lambda: self._trusted(reg.month.previous[0])
        g[0x0443] = lambda: self._trusted(reg.month.previous[1])
        for name, period, top in (("week", reg.week, 5), ("month", reg.month, 13)):
            for n in range(2, top + 1):  # PreviousWeek2..5, PreviousMonth2..13
                for k in (0, 1):
                    g[history_attr_id(name, n, received=bool(k))] = (
                        lambda p=period, n=n, k=k: self._trusted(p.back(n)[k]))
        # Block period attributes: served only while a block tariff is active.
        blocks = reg.blocks
        self._block_getters: dict[int, Callable[[], Any]] = {
            0x000C: lambda: self._trusted(blocks.period_delivered),
            0x000E: blocks.current_block,
            0x001C: lambda: self._trusted(blocks.previous_period_delivered),
            0x0022: lambda: to_zcl_time(blocks.last_switch or ZIGBEE_EPOCH),
        }
        received = reg.blocks_received
        self._received_block_getters: dict[int, Callable[[], Any]] = {
            0x001D: lambda: self._trusted(received.period_delivered),
            0x001E: received.current_block,
        }
        bill, bill_rx = self.bill, self.bill_received
        self._bill_getters: dict[int, tuple[BillAccumulator, Callable[[], Any]]] = {
            0x0A00: (bill, lambda: self._bill_value(bill)[0]),
            0x0A01: (bill, lambda: self._bill_value(bill)[1]),
            0x0A02: (bill, lambda: self._bill_value(bill)[2]),
            0x0A03: (bill, lambda: self._bill_value(bill)[3]),
            0x0A04: (bill, lambda: self._bill_value(bill)[4]),
            0x0A10: (bill_rx, lambda: self._bill_value(bill_rx)[0]),
            0x0A11: (bill_rx, lambda: self._bill_value(bill_rx)[1]),
            0x0A12: (bill_rx, lambda: self._bill_value(bill_rx)[2]),
            0x0A13: (bill_rx, lambda: self._bill_value(bill_rx)[3]),
            0x0A14: (bill_rx, lambda: self._bill_value(bill_rx)[4]),
        }
        self.commands.update({
            0x00: self._get_profile,
            0x03: self._request_fast_poll_mode,
            0x04: self._schedule_snapshot,
            0x05: self._take_snapshot,
            0x06: self._get_snapshot,
            0x07: self._start_sampling,
            0x08: self._get_sampled_data,
            0x0A: self._reset_load_limit_counter,
            0x0B: self._change_supply,
            0x0C: self._local_change_supply,
            0x0D: self._set_supply_status,
        })

    # -- block information (served while a block tariff is active) ------------------------
    def set_block_period(self, start_unix: int, thresholds_wh: list[int], *,
                         tiered: bool = False) -> None:
        """A block period starts (the Price server calls this): ``thresholds_wh`` are the
        block thresholds in Wh, cumulative from ``start_unix``; an empty list ends the
        block tariff. ``tiered``: a TOU + block tariff, whose blocks are counted per active
        tier (CurrentTierNBlockM...); else the block-only "No Tier" registers."""
        self.registers.blocks.start_period(int(start_unix), list(thresholds_wh), tiered=tiered)

    def set_received_block_period(self, start_unix: int, thresholds_wh: list[int], *,
                                  tiered: bool = False) -> None:
        """The export tariff's block period starts: the received block registers
        (CurrentTierNBlockMSummationReceived, CurrentBlockPeriodConsumptionReceived,
        CurrentBlockReceived) follow it; an empty list ends it."""
        self.registers.blocks_received.start_period(int(start_unix), list(thresholds_wh),
                                                    tiered=tiered)

    def set_received_tier(self, tier: int | None) -> None:
        """The export tariff's tier in force (None: no export tariff, exported energy is
        booked to the import tier)."""
        self.registers.set_received_tier(None if tier is None else
                                         min(max(tier, 1), self.config.tiers_in_use))

    @staticmethod
    def _block_of(attr_id: int) -> tuple[bool, int, int] | None:
        """(received?, tier, block) of a CurrentTierNBlockMSummation attribute."""
        for received, base in ((False, BLOCK_DELIVERED_BASE), (True, BLOCK_RECEIVED_BASE)):
            if base <= attr_id < base + 16 * (MAX_BLOCK_TIERS + 1):
                off = attr_id - base
                return received, off // MAX_BLOCKS, off % MAX_BLOCKS + 1
        return None

    def _blocks(self, received: bool) -> BlockRegisters:
        return self.registers.blocks_received if received else self.registers.blocks

    def supported(self, attr_id: int) -> bool:
        if attr_id in self._block_getters:
            return self.registers.blocks.active
        if attr_id in self._received_block_getters:
            return self.registers.blocks_received.active
        bill = self._bill_getters.get(attr_id)
        if bill is not None:
            return bill[0].active
        tb = self._block_of(attr_id)
        if tb is not None:
            return self._blocks(tb[0]).served(tb[1], tb[2], self.config.tiers_in_use)
        return super().supported(attr_id)

    def attr_ids(self) -> list[int]:
        ids = set(super().attr_ids())
        for received, base, getters in (
                (False, BLOCK_DELIVERED_BASE, self._block_getters),
                (True, BLOCK_RECEIVED_BASE, self._received_block_getters)):
            blocks = self._blocks(received)
            if not blocks.active:
                continue
            ids |= set(getters)
            tiers = range(1, min(self.config.tiers_in_use, MAX_BLOCK_TIERS) + 1) \
                if blocks.tiered else [0]
            for tier in tiers:
                for block in range(1, blocks.blocks_in_use + 1):
                    ids.add(base + 16 * tier + block - 1)
        ids |= {a for a, (acc, _) in self._bill_getters.items() if acc.active}
        return sorted(ids)

    def read_value(self, attr_id: int) -> Any:
        getter = self._block_getters.get(attr_id) or self._received_block_getters.get(attr_id)
        if getter is not None:
            return getter()
        bill = self._bill_getters.get(attr_id)
        if bill is not None:
            return bill[1]()
        tb = self._block_of(attr_id)
        if tb is not None:
            return self._trusted(self._blocks(tb[0]).summation(tb[1], tb[2]))
        return super().read_value(attr_id)

    # -- bills (SE 1.4 D.3.2.2.10) ------------------------------------------------------------
    def _bill_value(self, acc: BillAccumulator) -> Bill:
        """(to date, its time, projected, its time, trailing digit byte) on the air."""
        self._reading()  # bills are energy: not served on untrusted registers
        digits = self.price_source.price_trailing_digits if self.price_source else 0
        stamp = to_zcl_time(acc.stamp) if acc.stamp is not None else 0xFFFFFFFF
        return (units(acc.to_date(), digits), stamp, units(acc.projected(), digits), stamp,
                digits << 4)

    def bills(self) -> tuple[Bill | None, Bill | None]:
        """The bill values a snapshot keeps (delivered, received); None where none is kept."""
        return tuple(self._bill_value(acc) if acc.active else None  # type: ignore[return-value]
                     for acc in (self.bill, self.bill_received))

    def _update_bills(self, t: float, d: int, r: int) -> None:
        src = self.price_source
        if src is None:
            return
        period = src.billing_period
        regs = self.registers
        closed = self.bill.update(t, d, src.current_rate(), src.standing_charge, period,
                                  cost=self._block_cost(src, regs.last_split, False))
        export = src.current_export_rate()
        closed += self.bill_received.update(
            t, r, export, Decimal(0), period if export is not None else None,
            cost=self._block_cost(src, regs.last_split_received, True))
        for bill in closed:
            if self.on_bill is not None:
                self.on_bill(bill)
        if any(not b.received for b in closed):
            # SE snapshot cause "end of billing period": the meter's own snapshot, with the
            # bills of the period that ended (to date = projected = the period's total)
            digits = src.price_trailing_digits
            done: list[Bill | None] = [None, None]
            for bill in closed:
                value = units(bill.amount, digits)
                done[int(bill.received)] = (value, to_zcl_time(bill.end), value,
                                            to_zcl_time(bill.end), digits << 4)
            try:
                self.take_snapshot(t, CAUSE_END_OF_BILLING_PERIOD,
                                   bills=(done[0], done[1]))
            except LookupError:
                pass

    @staticmethod
    def _block_cost(src: PriceSource, split: dict[tuple[int, int], int],
                    received: bool) -> Decimal | None:
        """The cost of an increment a block tariff split over blocks (None: no split, or a
        price event overrides the block prices)."""
        if not split:
            return None
        cost = Decimal(0)
        for (tier, block), wh in split.items():
            rate = src.block_rate(tier, block, received)
            if rate is None:
                return None
            cost += Decimal(wh) * rate / 1000
        return cost

    def convert_bills(self, factor: Decimal, flags: int) -> None:
        """A currency change (Price's PublishCurrencyConversion): the bills to date are
        cleared (flag bit 0) or converted at ``factor`` (bit 1)."""
        for acc in (self.bill, self.bill_received):
            if flags & 0x01:
                acc.energy, acc.standing = Decimal(0), Decimal(0)
            elif flags & 0x02:
                acc.energy, acc.standing = acc.energy * factor, acc.standing * factor

    # -- alarm masks and extended status -------------------------------------------------
    def alarm_masks(self) -> dict[int, int]:
        return {attr: int(self.values[attr]) for attr in ALARM_MASKS}

    def restore_alarm_masks(self, masks: dict[int, int]) -> None:
        for attr, value in masks.items():
            if int(attr) in ALARM_MASKS:
                self.values[int(attr)] = self.typed(int(attr), int(value))

    def _masks_changed(self) -> None:
        if self.on_alarm_masks is not None:
            self.on_alarm_masks(self.alarm_masks())

    def _extended_status(self) -> int:
        status = 0
        if self.store_fault:
            status |= EXT_NV_MEMORY_ERROR
        if self.reading is None or self.reading.status & (
                MetrologyStatus.CALIBRATION_FAULT | MetrologyStatus.MEASUREMENT_FAULT
                | MetrologyStatus.REGISTER_FAULT):
            status |= EXT_MEASUREMENT_SYSTEM_ERROR
        closed = self.supply.relay.closed
        if self.supply.status != SupplyStatus.ON and closed:
            status |= EXT_SUPPLY_DISCONNECT_FAILURE
        if self.supply.status == SupplyStatus.ON and not closed:
            status |= EXT_SUPPLY_CONNECT_FAILURE
        limit = self.supply.demand_limit_w
        if limit is not None and self.reading is not None and self.reading.demand_w > limit:
            status |= EXT_LIMIT_THRESHOLD_EXCEEDED
        return status

    # -- readings ---------------------------------------------------------------------------
    def _now(self) -> float:
        return self.reading.timestamp if self.reading is not None else 0.0

    def update(self, reading: Reading) -> None:
        self.reading = reading
        if reading.status & (MetrologyStatus.CALIBRATION_FAULT | MetrologyStatus.MEASUREMENT_FAULT
                             | MetrologyStatus.LINK_DOWN):
            return  # untrusted or stale energy is not booked anywhere
        d, r = self.registers.update(reading.timestamp, reading.delivered_wh, reading.received_wh)
        self.profile.add(reading.timestamp, d, r)
        self._update_bills(reading.timestamp, d, r)
        self._feed_sessions(reading)
        self.supply.tick(reading.timestamp, reading.demand_w)
        self._announce_implemented()

    def tick(self, now: float) -> None:
        self.supply.tick(now, self.reading.demand_w if self.reading else 0)
        self._announce_implemented()
        self._run_schedules(now)

    def set_active_tier(self, tier: int) -> None:
        """The active price tier decides which tier register accrues (Price server calls)."""
        self.registers.set_tier(min(max(tier, 1), self.config.tiers_in_use))

    def _reading(self) -> Reading:
        if self.reading is None:
            raise LookupError("no reading from metrology yet")
        if self.reading.status & (
            MetrologyStatus.CALIBRATION_FAULT | MetrologyStatus.MEASUREMENT_FAULT
            | MetrologyStatus.LINK_DOWN
        ):
            # Never serve energy we do not trust (WELMEC 7.2): the read fails instead.
            raise LookupError(f"metrology fault: {self.reading.status!r}")
        return self.reading

    def _trusted(self, value: int) -> int:
        self._reading()
        return value

    def _meter_status(self) -> int:
        status = self.extra_status
        if self.reading is None or self.reading.status != MetrologyStatus.OK:
            status |= STATUS_CHECK_METER
        if self.supply.status != SupplyStatus.ON:
            status |= STATUS_SERVICE_DISCONNECT_OPEN
        return status

    # -- responses ----------------------------------------------------------------------------
    def _respond(self, req: Request, command_id: int, **fields: Any) -> list[bytes]:
        schema = self.cluster.client_commands[command_id].schema
        payload = schema(**fields).serialize()
        return [build_frame(response_header(req, command_id, general=False), payload)]

    def _get_profile(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        channel, end_time, count = int(args.interval_channel), int(args.end_time), int(
            args.number_of_periods)
        period = self.config.profile_period_code
        status = PROFILE_SUCCESS
        intervals: list[int] = []
        first_end = 0
        if channel >= INTERVAL_CHANNELS_DEFINED:
            status = PROFILE_UNDEFINED_CHANNEL
        elif channel not in CHANNELS:
            status = PROFILE_CHANNEL_NOT_SUPPORTED
        elif end_time != 0 and from_zcl_time(end_time) > int(now):
            status = PROFILE_INVALID_END_TIME
        else:
            wanted = count
            if count > MAX_PERIODS_DELIVERED:
                status = PROFILE_TOO_MANY_PERIODS
                wanted = MAX_PERIODS_DELIVERED
            at = 0 if end_time == 0 else from_zcl_time(end_time)
            first_end, intervals = self.profile.get(channel, at, wanted)
            if not intervals:
                status = PROFILE_NO_INTERVALS
        # GetProfileResponse: EndTime (UTC), Status, ProfileIntervalPeriod,
        # NumberOfPeriodsDelivered (uint8 each), then the intervals as uint24, most recent
        # first. Packed directly: zigpy's struct machinery costs more than the lookup.
        end = to_zcl_time(first_end) if first_end else 0
        payload = (end.to_bytes(4, "little") + bytes([status, period, len(intervals)])
                   + b"".join(min(v, 0xFFFFFF).to_bytes(3, "little") for v in intervals))
        return [build_frame(response_header(req, 0x00, general=False), payload)]

    def _request_fast_poll_mode(self, req: Request, args: Any, now: float) -> list[bytes]:
        applied = max(int(args.fast_poll_update_period), int(self.values[0x000B]))
        if int(now) >= self.fast_poll_until:
            minutes = min(int(args.duration), FAST_POLL_MAX_MINUTES)
            self.fast_poll_until = int(now) + minutes * 60
        # else: a request during fast poll mode gets the end time already granted (it does
        # not extend fast poll mode, or an IHD could keep the meter in it for ever)
        payload = t.uint8_t(applied).serialize() + t.uint32_t(
            to_zcl_time(self.fast_poll_until)).serialize()
        return [build_frame(response_header(req, 0x03, general=False), payload)]

    # -- supply control -------------------------------------------------------------------------
    def _head_end(self, req: Request, what: str) -> Status | None:
        """NOT_AUTHORIZED unless ``req`` comes from a supply authority (a head-end command:
        ScheduleSnapshot, StartSampling); the refusal is logged."""
        if req.broadcast or req.src_nwk not in self.config.supply_authorities:
            self.supply.events("COMMAND_REFUSED", {"status": "NOT_AUTHORIZED", "command": what,
                                                   "reason": f"0x{req.src_nwk:04X} may not"})
            return Status.NOT_AUTHORIZED
        return None

    def _authority(self, req: Request) -> None:
        if req.broadcast or req.src_nwk not in self.config.supply_authorities:
            self.supply.events("SUPPLY_REFUSED", {"status": "NOT_AUTHORIZED",
                                                  "reason": f"0x{req.src_nwk:04X} may not",
                                                  "command": req.command_id})
            raise Refused("NOT_AUTHORIZED", f"0x{req.src_nwk:04X} is not a supply authority")

    def _supply_status_response(self, provider_id: int, issuer_event_id: int,
                                implementation: int) -> bytes:
        return (t.uint32_t(provider_id).serialize() + t.uint32_t(issuer_event_id).serialize()
                + t.uint32_t(implementation).serialize()
                + t.uint8_t(int(self.supply.status)).serialize())

    def _supply_switched(self, status: SupplyStatus) -> None:
        self.reporter.queue(0x0014, int(status))
        try:
            self.reporter.queue(0x0200, self._meter_status())
        except LookupError:
            pass

    def _announce_implemented(self) -> None:
        """A scheduled ChangeSupply that asked for an acknowledgement was carried out: the
        SupplyStatusResponse goes out then (SE: it reports the status after implementation)."""
        for change in self.supply.implemented:
            self.push(0x0C, self._supply_status_response(
                change.provider_id, change.issuer_event_id, to_zcl_time(change.implementation_time)),
                dst=change.requester)
        self.supply.implemented.clear()

    def _change_supply(self, req: Request, args: Any, now: float) -> list[bytes] | Status:
        implementation = int(args.implementation_date_time)
        impl_unix = implementation if implementation in (0, CANCEL) else from_zcl_time(implementation)
        ack = bool(int(args.supply_control_bits) & 0x01)  # bit 0: acknowledge required
        try:
            self._authority(req)
            self.supply.remote_change(
                int(args.provider_id), int(args.issuer_event_id), impl_unix,
                int(args.proposed_supply_status), now, ack_required=ack,
                requester=(req.src_nwk, req.src_ep))
        except Refused as exc:
            return Status[exc.status]
        if ack and impl_unix != CANCEL and self.supply.pending is None:  # applied now
            return self._respond(
                req, 0x0C, provider_id=t.uint32_t(int(args.provider_id)),
                issuer_event_id=t.uint32_t(int(args.issuer_event_id)),
                implementation_date_time=t.UTCTime(implementation),
                supply_status=int(self.supply.status))
        return Status.SUCCESS

    def _local_change_supply(self, req: Request, args: Any, now: float) -> Status:
        if req.broadcast:  # a local change comes from one device the consumer is at
            return Status.NOT_AUTHORIZED
        try:
            self.supply.local_change(int(args.proposed_supply_status))
        except Refused as exc:
            return Status[exc.status]
        return Status.SUCCESS

    def _set_supply_status(self, req: Request, args: Any, now: float) -> Status:
        try:
            self._authority(req)
            self.supply.set_supply_status(
                int(args.issuer_event_id), int(args.supply_tamper_state),
                int(args.supply_depletion_state), int(args.supply_uncontrolled_flow_state),
                int(args.load_limit_supply_state))
        except Refused as exc:
            return Status[exc.status]
        return Status.SUCCESS

    def _reset_load_limit_counter(self, req: Request, args: Any, now: float) -> Status:
        try:
            self._authority(req)
            self.supply.reset_load_limit_counter(int(args.provider_id), int(args.issuer_event_id))
        except Refused as exc:
            return Status[exc.status]
        return Status.SUCCESS


__all__ = ["MAX_SNAPSHOTS", "MAX_TIERS", "MeteringConfig", "MeteringServer", "Snapshot",
           "formatting"]
