"""What the bridge publishes, as pure functions of the meter's state.

Values are SE arithmetic done exactly (Decimal): value = raw x multiplier / divisor in the
meter's unit of measure (kWh / kW for electricity), then power in W. The state document is
modelled on Glow's ``glow/<id>/SENSOR/electricitymeter`` JSON that GB users know.
"""

from __future__ import annotations

import dataclasses
import json
import time
from decimal import Decimal
from typing import Any

from zigpy.zcl.clusters.smartenergy import MeteringStatus

UNITS = {0x00: ("kWh", "kW"), 0x01: ("m³", "m³/h")}
#: ISO 4217 numeric → alphabetic code, for the tariff's currency
CURRENCIES = {826: "GBP", 978: "EUR", 840: "USD", 756: "CHF", 752: "SEK", 578: "NOK",
              208: "DKK", 36: "AUD", 554: "NZD", 124: "CAD"}
SUPPLY = {0: "off", 1: "armed", 2: "on"}


def currency_code(numeric: int) -> str:
    """The ISO 4217 letters for a numeric code ("" when we do not know it)."""
    return CURRENCIES.get(int(numeric), "")


def status_flags(status: int) -> list[str]:
    """The Metering Status bits that are set, by name (zigpy's MeteringStatus, SE 1.4
    electricity meter: check_meter, low_battery, tamper_detect, power_failure,
    power_quality, leak_detect, service_disconnect_open)."""
    return [name.lower() for name, member in MeteringStatus.__members__.items()
            if name != "Reserved" and status & member.value]


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
    cost_today: Decimal | None = None  # standing charge + energy so far today
    cost_day: int | None = None  # unix time of the UTC midnight cost_today started
    currency: int = 826  # ISO 4217 numeric
    source: str | None = None  # who read the values ("cad": a consumer access device)


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
        "meter": {"status": s.meter_status, "status_flags": status_flags(s.meter_status),
                  "status_text": ", ".join(status_flags(s.meter_status)) or "ok",
                  "supply": SUPPLY.get(s.supply_status, "unknown"), "faults": list(s.faults)},
    }
    if s.cost_today is not None and s.cost_day is not None:
        doc["cost"] = {"today": _num(s.cost_today.quantize(Decimal("0.0001"))),
                       "day_start": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                  time.gmtime(s.cost_day)),
                       "units": currency_code(s.currency)}
    if s.price is not None:
        doc["energy"]["import"]["price"] = s.price
    if s.message is not None:
        doc["message"] = s.message
    if s.ota is not None:
        doc["ota"] = s.ota
    if s.source is not None:
        doc["source"] = s.source
    return doc


def reading_payload(seq: int, s: MeterState) -> dict[str, Any]:
    return {
        "seq": seq,
        "timestamp": round(s.timestamp, 3),
        "import_kwh": _num(scaled(s.summation_delivered, s.multiplier, s.divisor)),
        "export_kwh": _num(scaled(s.summation_received, s.multiplier, s.divisor)),
        "power_w": _num(scaled(s.demand, s.multiplier, s.divisor) * 1000),
    }


@dataclasses.dataclass(frozen=True)
class Entity:
    """One Home Assistant entity of the meter (an MQTT discovery document)."""

    component: str  # sensor / switch
    object_id: str
    name: str
    config: dict[str, Any]


def entities(*, tiers: int = 0, currency: str = "GBP", supply_control: bool = False,
             command_topic: str = "") -> list[Entity]:
    """Every entity the bridge announces, from what the state document carries."""
    cur = currency or "GBP"

    def sensor(obj: str, name: str, template: str, unit: str | None = None,
               device_class: str | None = None, state_class: str | None = None,
               **extra: Any) -> Entity:
        cfg: dict[str, Any] = {"value_template": template}
        if unit:
            cfg["unit_of_measurement"] = unit
        if device_class:
            cfg["device_class"] = device_class
        if state_class:
            cfg["state_class"] = state_class
        return Entity("sensor", obj, name, {**cfg, **extra})

    energy = {"unit": "kWh", "device_class": "energy", "state_class": "total_increasing"}
    out = [
        sensor("energy_import", "Energy import",
               "{{ value_json.energy.import.cumulative }}", **energy),
        sensor("energy_export", "Energy export",
               "{{ value_json.energy.export.cumulative }}", **energy),
        sensor("energy_import_today", "Energy import today",
               "{{ value_json.energy.import.day }}", **energy),
        sensor("power", "Power", "{{ value_json.power.value }}", "W", "power", "measurement"),
    ]
    for n in range(1, tiers + 1):
        out.append(sensor(f"energy_import_tier_{n}", f"Energy import tier {n}",
                          f"{{{{ value_json.energy.import.tiers[{n - 1}] }}}}", **energy))
    price = "value_json.energy.import.price"
    out += [
        sensor("unit_rate", "Unit rate",
               f"{{{{ {price}.unitrate if {price} is defined else none }}}}", f"{cur}/kWh",
               suggested_display_precision=4),
        sensor("standing_charge", "Standing charge",
               f"{{{{ {price}.standingcharge if {price} is defined else none }}}}",
               f"{cur}/d", suggested_display_precision=4),
        # a total that starts again at midnight: HA's monetary class takes only "total",
        # with last_reset telling it when the day began
        sensor("cost_today", "Cost today",
               "{{ value_json.cost.today if value_json.cost is defined else none }}",
               cur, "monetary" if currency else None, "total" if currency else None,
               suggested_display_precision=2,
               **({"last_reset_value_template":
                   "{{ value_json.cost.day_start if value_json.cost is defined else none }}"}
                  if currency else {})),
        sensor("message", "Message",
               "{{ value_json.message.text if value_json.message is defined else '' }}",
               icon="mdi:message-text",
               json_attributes_topic="", json_attributes_template=(
                   "{{ (value_json.message if value_json.message is defined else {}) "
                   "| tojson }}")),
        sensor("meter_status", "Meter status", "{{ value_json.meter.status_text }}",
               entity_category="diagnostic", json_attributes_topic="",
               json_attributes_template="{{ {'flags': value_json.meter.status_flags, "
               "'bitmap': value_json.meter.status} | tojson }}"),
        sensor("supply", "Supply", "{{ value_json.meter.supply }}", device_class="enum",
               options=["on", "armed", "off"]),
    ]
    if supply_control:
        out.append(Entity("switch", "supply_switch", "Supply switch", {
            "command_topic": command_topic,
            "payload_on": json.dumps({"state": "on"}),
            "payload_off": json.dumps({"state": "off"}),
            "value_template": "{{ 'ON' if value_json.meter.supply == 'on' else 'OFF' }}",
            "state_on": "ON", "state_off": "OFF", "icon": "mdi:transmission-tower"}))
    return out


def discovery_documents(*, ieee: str, base: str, prefix: str, model: str, manufacturer: str,
                        sw_version: str, tiers: int = 0, currency: str = "GBP",
                        supply_control: bool = False) -> dict[str, dict[str, Any]]:
    """topic → retained config document for every entity (Home Assistant MQTT discovery;
    ``default_entity_id`` names the entity, ``object_id`` is gone from HA)."""
    nid = node_id(ieee)
    state_topic = f"{base}/{nid}/state"
    device = {"identifiers": [f"sep_{nid}"], "name": f"Smart meter {ieee}",
              "manufacturer": manufacturer, "model": model, "sw_version": sw_version,
              "serial_number": ieee}
    out = {}
    for ent in entities(tiers=tiers, currency=currency, supply_control=supply_control,
                        command_topic=f"{base}/{nid}/command/set_supply"):
        doc: dict[str, Any] = {
            "name": ent.name,
            "unique_id": f"sep_{nid}_{ent.object_id}",
            "default_entity_id": f"{ent.component}.sep_{nid}_{ent.object_id}",
            "state_topic": state_topic,
            "availability_topic": f"{base}/{nid}/availability",
            "device": device,
            "origin": {"name": "sep", "sw_version": sw_version},
            **ent.config,
        }
        if doc.get("json_attributes_topic") == "":
            doc["json_attributes_topic"] = state_topic
        out[f"{prefix}/{ent.component}/{nid}/{ent.object_id}/config"] = doc
    return out
