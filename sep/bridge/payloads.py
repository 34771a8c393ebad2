"""What the bridge publishes, as pure functions of the meter's state.

Values are SE arithmetic done exactly (Decimal): value = raw x multiplier / divisor in the
meter's unit of measure (kWh / kW for electricity), then power in W. The state document is
modelled on Glow's ``glow/<id>/SENSOR/electricitymeter`` JSON that GB users know.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from typing import Any

UNITS = {0x00: ("kWh", "kW"), 0x01: ("m³", "m³/h")}


@dataclasses.dataclass
class MeterState:
    ieee: str
    timestamp: float
    summation_delivered: int
    summation_received: int
    demand: int
    multiplier: int = 1
    divisor: int = 1000
    unit: int = 0
    tiers_delivered: list[int] = dataclasses.field(default_factory=list)
    tiers_received: list[int] = dataclasses.field(default_factory=list)
    day_delivered: int = 0
    week_delivered: int = 0
    month_delivered: int = 0
    day_received: int = 0
    meter_status: int = 0
    supply_status: int = 2
    price: dict[str, Any] | None = None
    message: dict[str, Any] | None = None
    ota: dict[str, Any] | None = None
    faults: list[str] = dataclasses.field(default_factory=list)


def scaled(raw: int, multiplier: int, divisor: int) -> Decimal:
    if divisor == 0:
        raise ValueError("divisor 0")
    return Decimal(raw) * Decimal(multiplier) / Decimal(divisor)


def _num(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


def node_id(ieee: str) -> str:
    return ieee.replace(":", "").lower()


def state_payload(s: MeterState) -> dict[str, Any]:
    k = lambda raw: _num(scaled(raw, s.multiplier, s.divisor))  # noqa: E731
    energy_unit, power_unit = UNITS.get(s.unit, ("", ""))
    power_kw = scaled(s.demand, s.multiplier, s.divisor)
    doc: dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.timestamp)),
        "energy": {
            "import": {
                "cumulative": k(s.summation_delivered),
                "day": k(s.day_delivered),
                "week": k(s.week_delivered),
                "month": k(s.month_delivered),
                "tiers": [k(v) for v in s.tiers_delivered],
                "units": energy_unit,
            },
            "export": {
                "cumulative": k(s.summation_received),
                "day": k(s.day_received),
                "tiers": [k(v) for v in s.tiers_received],
                "units": energy_unit,
            },
        },
        "power": {"value": _num(power_kw * 1000) if power_unit == "kW" else _num(power_kw),
                  "units": "W" if power_unit == "kW" else power_unit},
        "meter": {"status": s.meter_status, "supply": {0: "off", 1: "armed", 2: "on"}.get(
            s.supply_status, "unknown"), "faults": list(s.faults)},
    }
    if s.price is not None:
        doc["energy"]["import"]["price"] = s.price
    if s.message is not None:
        doc["message"] = s.message
    if s.ota is not None:
        doc["ota"] = s.ota
    return doc


def reading_payload(seq: int, s: MeterState) -> dict[str, Any]:
    return {
        "seq": seq,
        "timestamp": round(s.timestamp, 3),
        "import_kwh": _num(scaled(s.summation_delivered, s.multiplier, s.divisor)),
        "export_kwh": _num(scaled(s.summation_received, s.multiplier, s.divisor)),
        "power_w": _num(scaled(s.demand, s.multiplier, s.divisor) * 1000),
    }


SENSORS = (
    # object id, name, value template, unit, device class, state class, entity category
    ("energy_import", "Energy import", "{{ value_json.energy.import.cumulative }}", "kWh",
     "energy", "total_increasing", None),
    ("energy_export", "Energy export", "{{ value_json.energy.export.cumulative }}", "kWh",
     "energy", "total_increasing", None),
    ("energy_import_today", "Energy import today", "{{ value_json.energy.import.day }}", "kWh",
     "energy", "total_increasing", None),
    ("power", "Power", "{{ value_json.power.value }}", "W", "power", "measurement", None),
    ("unit_rate", "Unit rate",
     "{{ value_json.energy.import.price.unitrate | default(none) }}", "GBP/kWh", "monetary",
     None, None),
    ("standing_charge", "Standing charge",
     "{{ value_json.energy.import.price.standingcharge | default(none) }}", "GBP", "monetary",
     None, None),
    ("supply", "Supply", "{{ value_json.meter.supply }}", None, None, None, "diagnostic"),
    ("meter_status", "Meter status", "{{ value_json.meter.status }}", None, None, None,
     "diagnostic"),
)


def discovery_documents(*, ieee: str, base: str, prefix: str, model: str, manufacturer: str,
                        sw_version: str) -> dict[str, dict[str, Any]]:
    """topic → retained config document for every sensor."""
    nid = node_id(ieee)
    device = {"identifiers": [f"sep_{nid}"], "name": f"Smart meter {ieee}",
              "manufacturer": manufacturer, "model": model, "sw_version": sw_version}
    out = {}
    for obj, name, template, unit, dclass, sclass, category in SENSORS:
        doc: dict[str, Any] = {
            "name": name,
            "unique_id": f"sep_{nid}_{obj}",
            "object_id": f"sep_{nid}_{obj}",
            "state_topic": f"{base}/{nid}/state",
            "value_template": template,
            "availability_topic": f"{base}/{nid}/availability",
            "device": device,
        }
        if unit:
            doc["unit_of_measurement"] = unit
        if dclass:
            doc["device_class"] = dclass
        if sclass:
            doc["state_class"] = sclass
        if category:
            doc["entity_category"] = category
        out[f"{prefix}/sensor/{nid}/{obj}/config"] = doc
    return out
