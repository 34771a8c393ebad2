"""Supply control by itself (``sep.meter.supply``), rule by rule of SE 1.4 D.3.2.3.1.10-14.

The oracle is the spec's text as the module docstring quotes it: ChangeSupply needs our
provider id and an issuer event id newer than the last applied one (one sequence for
every supply command), implementation time 0 = now and 0xFFFFFFFF = cancel the pending
change with the same ids; LocalChangeSupply arms from ON and restores only from ARMED;
SetSupplyStatus sets where tamper, depletion, uncontrolled flow and load limiting leave
the supply; load limiting opens the relay after the demand stays above the limit for the
arm duration. The relay is a recording driver; the stored state goes through json.
"""

from __future__ import annotations

import json

import pytest

from sep.meter.supply import CANCEL, PendingChange, Refused, SupplyControl, SupplyStatus

OFF, ARMED, ON = SupplyStatus.OFF, SupplyStatus.ARMED, SupplyStatus.ON
PROVIDER = 0x0000ABCD


class Relay:
    def __init__(self, closed: bool = True) -> None:
        self._closed = closed
        self.moves: list[bool] = []

    def set_closed(self, closed: bool) -> None:
        self.moves.append(closed)
        self._closed = closed

    @property
    def closed(self) -> bool:
        return self._closed


def control(closed: bool = True) -> tuple[SupplyControl, Relay, list[tuple[str, dict]]]:
    relay, events = Relay(closed), []
    s = SupplyControl(provider_id=PROVIDER, relay=relay,
                      events=lambda kind, details: events.append((kind, details)))
    return s, relay, events


def refused(fn, *args, status: str, **kw) -> Refused:
    with pytest.raises(Refused) as info:
        fn(*args, **kw)
    assert info.value.status == status
    return info.value


def test_starts_from_the_relay():
    assert control(True)[0].status == ON and control(False)[0].status == OFF
    s = SupplyControl()  # the simulated relay starts closed
    assert s.status == ON and s.relay.closed and s.provider_id == PROVIDER


def test_change_supply_now_needs_our_provider_and_a_newer_id():
    s, relay, events = control()
    refused(s.remote_change, PROVIDER + 1, 5, 0, 0, 100.0, status="NOT_AUTHORIZED")
    assert s.status == ON and s.last_issuer_event_id is None and relay.moves == []
    assert events[-1][0] == "SUPPLY_REFUSED" and events[-1][1]["status"] == "NOT_AUTHORIZED"
    s.remote_change(PROVIDER, 5, 0, int(OFF), 100.0)
    assert s.status == OFF and not relay.closed and s.last_issuer_event_id == 5
    assert events[-1] == ("SUPPLY_CHANGE", {"from": "ON", "to": "OFF", "source": "remote",
                                            "relay_closed": False, "issuer_event_id": 5})
    for old in (5, 4, 0):  # the same id again, or an older one: a replay
        refused(s.remote_change, PROVIDER, old, 0, int(ON), 100.0, status="NOT_AUTHORIZED")
    assert s.status == OFF
    s.remote_change(PROVIDER, 6, 100, int(ARMED), 100.0)  # a time already reached: now
    assert s.status == ARMED and not relay.closed and s.pending is None
    s.remote_change(PROVIDER, 7, 99, int(ON), 100.0)
    assert s.status == ON and relay.closed


@pytest.mark.parametrize("proposed", [3, 0xFF])
def test_a_reserved_status_is_invalid_and_uses_up_no_id(proposed):
    s, relay, _ = control()
    refused(s.remote_change, PROVIDER, 9, 0, proposed, 0.0, status="INVALID_VALUE")
    assert s.last_issuer_event_id is None and s.status == ON
    s.remote_change(PROVIDER, 9, 0, int(OFF), 0.0)  # the same id is still good
    assert s.status == OFF


def test_a_scheduled_change_waits_for_its_time_and_can_be_cancelled():
    s, relay, events = control()
    s.remote_change(PROVIDER, 1, 1000, int(OFF), 10.0, ack_required=True, requester=(0x1234, 2))
    assert s.pending == PendingChange(PROVIDER, 1, 1000, OFF, True, (0x1234, 2))
    assert s.status == ON and events[-1][0] == "SUPPLY_CHANGE_SCHEDULED"
    s.tick(999.0, 0)
    assert s.status == ON and s.pending is not None and s.implemented == []
    s.tick(1000.0, 0)
    assert s.status == OFF and s.pending is None
    assert [(c.issuer_event_id, c.requester) for c in s.implemented] == [(1, (0x1234, 2))]
    assert events[-1][1]["source"] == "remote (scheduled)"
    # scheduled without acknowledgement: nothing to answer
    s.remote_change(PROVIDER, 2, 2000, int(ON), 1000.0)
    s.tick(2000.0, 0)
    assert s.status == ON and len(s.implemented) == 1
    # cancel: same provider and id only; NOT_FOUND otherwise, and nothing is cancelled
    s.remote_change(PROVIDER, 3, 3000, int(OFF), 2000.0)
    refused(s.remote_change, PROVIDER, 2, CANCEL, 0, 2000.0, status="NOT_FOUND")
    refused(s.remote_change, PROVIDER + 1, 3, CANCEL, 0, 2000.0, status="NOT_AUTHORIZED")
    assert s.pending is not None
    s.remote_change(PROVIDER, 3, CANCEL, 0, 2000.0)
    assert s.pending is None and events[-1] == ("SUPPLY_CHANGE_CANCELLED",
                                                {"issuer_event_id": 3})
    s.tick(5000.0, 0)
    assert s.status == ON
    refused(s.remote_change, PROVIDER, 4, CANCEL, 0, 5000.0, status="NOT_FOUND")  # none left


def test_local_change_arms_from_on_and_restores_only_from_armed():
    s, relay, events = control()
    s.local_change(int(ON))  # already on: nothing happens
    assert relay.moves == [] and events == []
    s.local_change(int(ARMED), source="mqtt")
    assert s.status == ARMED and not relay.closed and events[-1][1]["source"] == "mqtt"
    s.local_change(int(ON))
    assert s.status == ON and relay.closed and events[-1][1]["source"] == "local"
    s.remote_change(PROVIDER, 1, 0, int(OFF), 0.0)
    refused(s.local_change, int(ARMED), status="ACTION_DENIED")  # the supplier's OFF stays
    refused(s.local_change, int(ON), status="ACTION_DENIED")
    assert s.status == OFF and not relay.closed
    for bad in (0, 3, 0xFF):
        refused(s.local_change, bad, status="INVALID_VALUE")


def test_the_interlock_keeps_an_armed_supply_open():
    s, relay, _ = control()
    why = ["no credit"]
    s.interlock = lambda: why[0]
    assert s.interlock_open("prepayment", credit=0) is True
    assert s.status == ARMED and not relay.closed
    assert s.interlock_open("prepayment") is False  # already open: left as it is
    err = refused(s.local_change, int(ON), status="ACTION_DENIED")
    assert "no credit" in str(err.reason)
    why[0] = None
    s.local_change(int(ON))
    assert s.status == ON
    s.remote_change(PROVIDER, 1, 0, int(OFF), 0.0)
    assert s.interlock_open("prepayment") is False and s.status == OFF


def test_set_supply_status_shares_the_id_sequence_and_refuses_reserved_states():
    s, relay, events = control()
    s.remote_change(PROVIDER, 10, 0, int(ON), 0.0)
    refused(s.set_supply_status, 10, 0, 0, 0, 0, status="NOT_AUTHORIZED")
    refused(s.set_supply_status, 11, 0, 3, 0, 0, status="INVALID_VALUE")
    assert s.last_issuer_event_id == 10 and s.depletion_state == OFF
    s.set_supply_status(11, 1, 2, 1, 0)
    assert (s.tamper_state, s.depletion_state, s.uncontrolled_flow_state,
            s.load_limit_state) == (ARMED, ON, ARMED, OFF)
    assert events[-1] == ("SUPPLY_STATUS_SET", {"issuer_event_id": 11, "tamper": 1,
                                                "depletion": 2, "uncontrolled_flow": 1,
                                                "load_limit": 0})
    refused(s.remote_change, PROVIDER, 11, 0, int(OFF), 0.0, status="NOT_AUTHORIZED")
    refused(s.reset_load_limit_counter, PROVIDER, 11, status="NOT_AUTHORIZED")
    assert s.status == ON and relay.moves == [True]


def test_load_limiting_opens_after_the_arm_duration_above_the_limit():
    s, relay, events = control()
    s.tick(0.0, 10_000)  # no limit set: nothing
    s.demand_limit_w, s.arm_duration_s = 1000, 60
    s.tick(0.0, 1001)
    s.tick(59.0, 1001)
    assert s.status == ON
    s.tick(59.5, 1000)  # at the limit is not above it: the count starts again
    s.tick(100.0, 1001)
    s.tick(159.0, 5000)
    assert s.status == ON and s.load_limit_counter == 0
    s.tick(160.0, 5000)
    assert s.status == ARMED and s.load_limit_counter == 1 and not relay.closed
    assert events[-1][1] == {"from": "ON", "to": "ARMED", "source": "load limit",
                             "relay_closed": False, "demand_w": 5000, "limit_w": 1000,
                             "counter": 1}
    s.tick(1000.0, 5000)  # not ON: nothing more
    assert s.load_limit_counter == 1
    s.local_change(int(ON))
    s.tick(1001.0, 5000)  # the timer restarted when the supply came back
    s.tick(1060.0, 5000)
    assert s.status == ON
    s.tick(1061.0, 5000)
    assert s.status == ARMED and s.load_limit_counter == 2
    refused(s.reset_load_limit_counter, PROVIDER + 1, 1, status="NOT_AUTHORIZED")
    s.reset_load_limit_counter(PROVIDER, 1)
    assert s.load_limit_counter == 0 and s.last_issuer_event_id == 1
    assert events[-1] == ("LOAD_LIMIT_COUNTER_RESET", {"was": 2, "issuer_event_id": 1})


def test_the_state_survives_a_restart_through_json():
    s, _, _ = control()
    s.set_supply_status(3, 2, 1, 0, 0)
    s.remote_change(PROVIDER, 4, 0, int(ARMED), 0.0)
    s.remote_change(PROVIDER, 5, 500, int(OFF), 0.0, ack_required=True, requester=(7, 9))
    s.load_limit_counter = 3
    saved = json.loads(json.dumps(s.state()))
    t, relay, _ = control(closed=True)
    t.restore(saved)
    assert t.status == ARMED and relay.moves == [False] and not relay.closed
    assert (t.tamper_state, t.depletion_state, t.uncontrolled_flow_state,
            t.load_limit_state) == (ON, ARMED, OFF, OFF)
    assert t.load_limit_counter == 3 and t.last_issuer_event_id == 5
    assert t.pending == PendingChange(PROVIDER, 5, 500, OFF, True, (7, 9))
    refused(t.remote_change, PROVIDER, 5, 0, int(ON), 0.0, status="NOT_AUTHORIZED")
    t.tick(500.0, 0)
    assert t.status == OFF and t.implemented[0].requester == (7, 9)
    # a state saved before any command, and one from before requesters were kept
    u, relay_u, _ = control()
    u.restore({"status": 2, "last_issuer_event_id": None,
               "pending": [PROVIDER, 1, 10, 0, False]})
    assert u.status == ON and relay_u.closed and u.last_issuer_event_id is None
    assert u.pending == PendingChange(PROVIDER, 1, 10, OFF, False, None)
    assert (u.load_limit_counter, u.load_limit_state, u.tamper_state) == (0, ARMED, OFF)
    assert u.state()["pending"][5] is None


def test_the_relay_moves_and_observers_hear_only_real_changes():
    s, relay, events = control()
    moved, before = [], []
    s.on_switch = moved.append
    s.before_switch = lambda: before.append(s.status)
    s.set_status(ON, "tenancy")  # already there: no switch, no event, relay not settled
    assert moved == [] and before == [] and events == []
    s.set_status(ARMED, "tenancy", reason="change of tenancy")
    assert moved == [ARMED] and before == [ON] and s.last_issuer_event_id is None
    assert events[-1][1]["reason"] == "change of tenancy"
    s.remote_change(PROVIDER, 1, 0, int(OFF), 0.0)  # ARMED -> OFF: the relay stays open
    assert moved == [ARMED, OFF] and before == [ON]
    s.remote_change(PROVIDER, 2, 0, int(ON), 0.0)
    assert moved == [ARMED, OFF, ON] and before == [ON, OFF] and relay.closed


def test_every_refusal_is_logged_with_its_reason():
    s, _, events = control()

    def reason(fn, *args, status: str, **kw) -> str:
        refused(fn, *args, status=status, **kw)
        kind, details = events[-1]
        assert kind == "SUPPLY_REFUSED" and details["status"] == status
        return details["reason"]

    assert reason(s.remote_change, 0x1234, 1, 0, 0, 0.0,
                  status="NOT_AUTHORIZED") == "provider 0x00001234 is not ours"
    assert reason(s.reset_load_limit_counter, 0x1234, 1,
                  status="NOT_AUTHORIZED") == "provider 0x00001234 is not ours"
    assert reason(s.remote_change, PROVIDER, 1, CANCEL, 0, 0.0,
                  status="NOT_FOUND") == "no pending change with issuer event id 1"
    assert reason(s.remote_change, PROVIDER, 1, 0, 7, 0.0,
                  status="INVALID_VALUE") == "proposed supply status 7 is reserved"
    assert reason(s.local_change, 9, status="INVALID_VALUE") == \
        "local supply status 9 is not allowed"
    assert reason(s.set_supply_status, 1, 0, 0, 0, 5, status="INVALID_VALUE") == \
        "supply states [0, 0, 0, 5]: a value is reserved"
    s.remote_change(PROVIDER, 10, 0, int(OFF), 0.0)
    assert reason(s.remote_change, PROVIDER, 10, 0, 0, 0.0,
                  status="NOT_AUTHORIZED") == "issuer event id 10 is not newer than 10"
    assert reason(s.local_change, int(ARMED), status="ACTION_DENIED") == \
        "the supplier turned the supply off"
    assert reason(s.local_change, int(ON), status="ACTION_DENIED") == \
        "local restore needs the supply armed, it is OFF"


def test_switch_events_name_who_and_why():
    s, _, events = control()
    s.set_status(ARMED, "tenancy", reason="change of tenancy")
    assert events[-1] == ("SUPPLY_CHANGE", {"from": "ON", "to": "ARMED", "source": "tenancy",
                                            "relay_closed": False, "reason": "change of tenancy"})
    s.local_change(int(ON))
    s.interlock_open("prepayment", credit=0)
    assert events[-1][1]["source"] == "prepayment" and events[-1][1]["credit"] == 0
    s.remote_change(PROVIDER, 4, 50, int(OFF), 0.0)
    assert events[-1] == ("SUPPLY_CHANGE_SCHEDULED", {"to": "OFF", "at": 50,
                                                      "issuer_event_id": 4})
    s.tick(50.0, 0)
    assert events[-1][1]["source"] == "remote (scheduled)"
    assert events[-1][1]["issuer_event_id"] == 4


def test_a_fresh_control_has_plain_defaults():
    s = SupplyControl()
    assert s.state() == {"status": 2, "last_issuer_event_id": None, "load_limit_counter": 0,
                         "load_limit_state": 1, "states": [0, 0, 0], "pending": None}
    assert s.arm_duration_s == 60
    s.demand_limit_w = 100
    s.tick(0.0, 101)  # the very first tick above the limit starts the count
    s.tick(59.9, 101)
    assert s.status == ON
    s.tick(60.0, 101)
    assert s.status == ARMED and s.load_limit_counter == 1
    t = SupplyControl()
    t.restore({"status": 0, "pending": None})
    assert t.pending is None and t.status == OFF and not t.relay.closed
    assert (t.tamper_state, t.depletion_state, t.uncontrolled_flow_state) == (OFF, OFF, OFF)


def test_the_simulated_relay_counts_only_real_moves():
    s = SupplyControl()
    assert s.relay.switches == 0
    s.relay.set_closed(True)
    assert s.relay.switches == 0
    s.relay.set_closed(False)
    s.relay.set_closed(False)
    s.relay.set_closed(True)
    assert s.relay.switches == 2 and s.relay.closed


def test_load_limiting_that_leaves_the_supply_on_keeps_counting():
    s, relay, _ = control()
    s.set_supply_status(1, 0, 0, 0, int(ON))  # load limiting leaves the supply ON
    s.demand_limit_w, s.arm_duration_s = 1000, 10
    for t in (0.0, 10.0, 11.0, 21.0):
        s.tick(t, 2000)
    assert s.status == ON and relay.closed and s.load_limit_counter == 2
