"""Scripted scenarios for `hubsim demo --scenario NAME` (the prepayment part of the HAN).

- ``default``: the supplier switches the meter to prepayment with an opening credit, a
  debt recovered by the hour and emergency credit on offer; the PPMID tops up once.
- ``prepayment``: the credit runs down (a low-credit message reaches the displays),
  emergency credit becomes available and the PPMID selects it, the credit is exhausted
  and the meter interrupts the supply (ARMED), a top-up bought from the supplier is
  entered on the PPMID, and the PPMID restores the supply; the same code entered again
  is refused. It starts on a weekday morning, outside the tariff's friendly-credit hours,
  and runs at 600× (an afternoon in a minute).

Money in the supplier's commands is in price units (0.0001 GBP with the demo tariff).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sep.zcl import prepayment as pp

LOGGER = logging.getLogger(__name__)

SCENARIOS = {
    "default": "supplier sets up prepayment, the PPMID tops up once; gas through the mirror",
    "prepayment": "credit runs down, low credit, emergency credit, supply interrupted, "
                  "top-up and restore from the PPMID (60 s at 600x)",
}
SCENARIO_SPEED = {"prepayment": 600.0}
SCENARIO_DURATION = {"prepayment": 60.0}
GBP = 10_000  # price units per pound (4 trailing digits)


def scenario_start(name: str, earliest: float) -> float | None:
    """Where simulated time starts for a scenario (None: now)."""
    if name != "prepayment":
        return None
    day = dt.datetime.fromtimestamp(earliest, dt.UTC).date() + dt.timedelta(days=1)
    while day.weekday() != 1:  # a Tuesday: no friendly credit until the evening
        day += dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, 10, 0, tzinfo=dt.UTC).timestamp()


class ScenarioLog:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        when = dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%H:%M")
        LOGGER.info("scenario: %s", text)
        self.lines.append(f"{when} {text}")
        del self.lines[:-40]


async def _until(cond: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def _refresh(ppmid: Any) -> None:
    try:
        await ppmid.refresh()
    except Exception as exc:  # noqa: BLE001 - shown again at the next refresh
        LOGGER.info("PPMID refresh failed: %r", exc)


async def default_prepayment(hub: Any, meter_ieee: str, ppmid: Any, log: ScenarioLog, *,
                             step: float = 3.0) -> None:
    """The default demo's prepayment: set up (once per data directory) and one top-up."""
    await asyncio.sleep(step)
    try:
        hub.prepay.cluster(meter_ieee)
    except LookupError as exc:  # e.g. the meter on EZSP: the hub joined it, never met it
        log(f"no prepayment in this run: {exc}")
        return
    if not ppmid.view.prepayment:
        await hub.prepay.start_prepayment(
            meter_ieee, credit=5 * GBP, ec_limit=5 * GBP, ec_threshold=1 * GBP,
            low_level=1 * GBP, max_credit=250 * GBP, max_per_top_up=100 * GBP)
        await hub.prepay.add_debt(meter_ieee, debt_type=1, amount=20 * GBP, label="Arrears",
                                  per_period=GBP // 10)
        log("supplier: prepayment, credit £5.00, £20.00 arrears at £0.10 an hour")
    await _refresh(ppmid)
    await asyncio.sleep(step)
    code = hub.prepay.vend(1000)
    result, value, credit = await ppmid.top_up(code)
    log(f"PPMID top-up {code}: {ppmid.view.last_result}, credit {ppmid.view.money(credit)}")
    await _refresh(ppmid)


async def prepayment_run_down(hub: Any, meter_ieee: str, ppmid: Any, log: ScenarioLog, *,
                              patience: float = 35.0) -> None:
    """The ``prepayment`` scenario (see the module docstring)."""
    await asyncio.sleep(1.0)
    await hub.prepay.start_prepayment(
        meter_ieee, credit=GBP * 40 // 100, ec_limit=GBP // 4, ec_threshold=GBP // 5,
        low_level=GBP * 30 // 100, max_credit=250 * GBP, max_per_top_up=100 * GBP)
    await hub.prepay.add_debt(meter_ieee, debt_type=1, amount=3 * GBP, label="Arrears",
                              per_period=GBP // 20)
    log("supplier: prepayment, credit £0.40, emergency credit £0.25 below £0.20, "
        "£3.00 arrears at £0.05 an hour")
    await _refresh(ppmid)
    view = ppmid.view
    if await _until(lambda: bool((view.credit_status or 0) & pp.LOW_CREDIT), patience):
        log(f"low credit: {view.money(view.credit)}")
    if await _until(lambda: bool((view.credit_status or 0) & pp.EMERGENCY_CREDIT_AVAILABLE),
                    patience):
        status = await ppmid.select_emergency_credit()
        log(f"PPMID selects emergency credit: {getattr(status, 'name', status)}")
    if not await _until(lambda: view.supply_status == 1, patience):
        # a slow machine: the supplier corrects the balance so the demo goes on
        await hub.prepay.adjust_credit(meter_ieee, 0, absolute=True)
        await _until(lambda: view.supply_status == 1, 10.0)
    log(f"credit exhausted: supply interrupted (armed), credit {view.money(view.credit)}")
    restore = await ppmid.restore_supply()
    log(f"PPMID restore before topping up: {getattr(restore, 'name', restore)}")
    await asyncio.sleep(1.0)
    code = hub.prepay.vend(500)
    _result, _value, credit = await ppmid.top_up(code)
    log(f"PPMID top-up {code}: {view.last_result}, credit {view.money(credit)}")
    restore = await ppmid.restore_supply()
    log(f"PPMID restores the supply: {getattr(restore, 'name', restore)}")
    await _refresh(ppmid)
    await ppmid.top_up(code)
    log(f"the same code again: {view.last_result}")
    await hub.prepay.top_up_log(meter_ieee)
    await hub.prepay.debt_log(meter_ieee)
    await hub.prepay.snapshot(meter_ieee)
    log("supplier read the top-up log, the debt log and a snapshot")
