"""Prepayment across the virtual air: the hub's ESI, the meter, the PPMID and an intruder.

The PPMID and the hub speak through zigpy's client side; what comes back is zigpy's parse
of the meter's frames. A code is refused when it is typed again, and when the frame that
carried it is replayed off the air — from the PPMID (duplicate) or from another node (not
authorised); the PPMID may not send the supplier's commands; an exhausted credit
interrupts the supply, which the PPMID can restore only after a top-up.
"""

from __future__ import annotations

import zigpy.types as t
from luhn_oracle import luhn
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from hubsim.ppmid import PPMID_IEEE, Ppmid
from radios.air import VirtualAir
from radios.sniffer import Sniffer
from radios.virtual import VirtualControllerApplication, virtual_config
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.meter.supply import SupplyStatus
from sep.zcl.security import requires_aps_security
from tests.waiting import until

METER_IEEE = "00:0d:6f:00:00:00:cc:02"
INTRUDER_IEEE = "00:0d:6f:00:00:00:66:66"
GBP = 10_000


async def test_top_up_replay_and_interlock_across_the_air():
    air = VirtualAir()
    frames: list = []
    Sniffer(air).add_tap(lambda frame, when: frames.append(frame))  # decrypted, as it crosses
    clock = ManualClock(1_780_300_800)
    hub = CommsHub(air=air, clock=clock.now)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, tick_seconds=0.05, ppmids=(PPMID_IEEE,)),
                     clock=clock, air=air)
    await meter.start()
    ppmid = Ppmid(air=air, clock=clock.now, report_max=5)
    intruder = VirtualControllerApplication(virtual_config(INTRUDER_IEEE, air=air,
                                                           aps_policy=requires_aps_security))
    await ppmid.start()
    await intruder.startup()
    # a member of the HAN with its own link key with the meter (not this home's PPMID)
    await intruder.request_link_key(t.EUI64.convert(METER_IEEE))
    try:
        await hub.wait_interviewed(METER_IEEE)
        await ppmid.connect()
        out = await hub.prepay.start_prepayment(METER_IEEE, credit=2 * GBP, ec_limit=0,
                                                ec_threshold=0, low_level=GBP)
        assert all(getattr(v, "name", "SUCCESS") == "SUCCESS" for v in out.values()), out
        code = luhn("00000042" + "001500")  # serial 42, £15.00, a Luhn digit
        result, value, credit = await ppmid.top_up(code)
        assert (result, value) == (0x10, 15 * GBP)  # Accepted – Supply Enabled
        assert 16 * GBP < credit <= 17 * GBP
        assert (await ppmid.top_up(code))[0] == 0x02  # typed again: Rejected – Duplicate

        # the frame that carried the code, replayed off the air
        [carrier] = [f for f in frames if f.cluster_id == 0x0705 and f.payload[2:3] == b"\x04"
                     and code.encode() in f.payload and f.src_nwk == ppmid.app.state.node_info.nwk
                     ][:1]

        async def replay(app, tsn):
            payload = bytes([carrier.payload[0], tsn]) + carrier.payload[2:]
            await app.send_packet(t.ZigbeePacket(
                src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=app.state.node_info.nwk),
                src_ep=1, dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK,
                                                address=t.NWK(meter.nwk)),
                dst_ep=1, tsn=tsn, profile_id=0x0109, cluster_id=0x0705,
                data=t.SerializableBytes(payload), tx_options=t.TransmitOptions.ACK, radius=30))

        def answers(since: int, tsn: int) -> list:
            return [f for f in frames[since:] if f.src_nwk == meter.nwk
                    and f.cluster_id == 0x0705 and len(f.payload) > 3 and f.payload[1] == tsn]

        seen = len(frames)
        await replay(intruder, 0x71)
        await until(lambda: answers(seen, 0x71))
        [answer] = answers(seen, 0x71)
        assert answer.payload[2] == 0x0B  # a Default Response ...
        assert answer.payload[4] == foundation.Status.NOT_AUTHORIZED  # ... refusing a stranger
        seen = len(frames)
        await replay(ppmid.app, 0x72)
        await until(lambda: answers(seen, 0x72))
        [answer] = answers(seen, 0x72)
        assert answer.payload[2] == 0x03 and answer.payload[3] == 0x02  # duplicate
        assert meter.prepayment.account.total_added == 15 * GBP

        # the PPMID may not change the supplier's terms
        rsp = await ppmid.prepayment.credit_adjustment(
            issuer_event_id=0x7FFFFFFF, start_time=0, credit_adjustment_type=1,
            credit_adjustment_value=1_000 * GBP)
        assert rsp.status == foundation.Status.NOT_AUTHORIZED
        rsp = await ppmid.prepayment.change_payment_mode(
            provider_id=0xABCD, issuer_event_id=0x7FFFFFFF, implementation_date_time=0,
            proposed_payment_control_configuration=0, cut_off_value=0)
        assert rsp.status == foundation.Status.NOT_AUTHORIZED
        assert meter.prepayment.account.prepayment

        # no credit: the supply is interrupted and cannot be restored before a top-up
        assert await hub.prepay.adjust_credit(METER_IEEE, 0, absolute=True) == \
            foundation.Status.SUCCESS
        await until(lambda: meter.metering.supply.status == SupplyStatus.ARMED)
        await until(lambda: ppmid.view.supply_status == 1)
        assert await ppmid.restore_supply() == foundation.Status.ACTION_DENIED
        result, _value, _credit = await ppmid.top_up(luhn("00000043" + "000500"))
        assert result == 0x12  # Accepted – Supply Armed
        assert await ppmid.restore_supply() == foundation.Status.SUCCESS
        assert meter.metering.supply.status == SupplyStatus.ON
    finally:
        await intruder.shutdown()
        await ppmid.stop()
        await meter.stop()
        await hub.stop()
