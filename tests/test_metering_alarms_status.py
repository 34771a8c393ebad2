"""The Metering alarm masks (SE 1.4 D.3.2.2.13) and ExtendedStatus (D.3.2.2.2) over the air.

The masks are writable with their own data types (ZCL r8 2.5.3: another type is
INVALID_DATA_TYPE), every alarm enabled by default, kept by the store across a restart;
ExtendedStatus shows an integrity fault of the store as "NV memory error" (bit 5) once the
stored data has been edited behind the meter's back. tshark names the attributes and
reads the values.
"""

from __future__ import annotations

import sqlite3

import zigpy.types as t
from han_tools import Han
from tshark_tools import fields, malformed, need_tshark
from zigpy.zcl import foundation

S = foundation.Status
START = 1_780_300_800  # 2026-06-01T08:00:00Z


async def test_alarm_masks_are_written_checked_and_kept(tmp_path):
    need_tshark()
    data = tmp_path / "data"
    han = Han(tmp_path, start=START, data_dir=data)
    await han.start()
    m = han.metering
    try:
        defaults = await han.read([0x0800, 0x0801, 0x0802, 0x0806, 0x0807, 0x0204])
        rsp = await m.write_attributes({"generic_alarm_mask": 0x0041,
                                        "electricity_alarm_mask": 0x00010000})
        assert all(r.status == S.SUCCESS for r in rsp[0])
        # the wrong data type for a mask: refused, nothing changes
        bad = foundation.Attribute(0x0806, foundation.TypeValue(
            type=foundation.DataTypeId.uint16, value=t.uint16_t(1)))
        rsp2 = await m._write_attributes([bad])
        assert [r.status for r in rsp2[0]] == [S.INVALID_DATA_TYPE]
        # masks the electricity meter does not have
        rsp3 = await m._write_attributes([foundation.Attribute(0x0805, foundation.TypeValue(
            type=foundation.DataTypeId.map16, value=t.bitmap16(1)))])
        assert [r.status for r in rsp3[0]] == [S.UNSUPPORTED_ATTRIBUTE]
        written = await han.read([0x0800, 0x0801, 0x0806])
    finally:
        await han.stop()
    assert {k: int(v) for k, v in defaults.items()} == {
        0x0800: 0xFFFF, 0x0801: 0xFFFFFFFF, 0x0802: 0xFFFF, 0x0806: 0xFFFFFFFFFFFF,
        0x0807: 0xFFFF, 0x0204: 0}
    assert {k: int(v) for k, v in written.items()} == {
        0x0800: 0x0041, 0x0801: 0x00010000, 0x0806: 0xFFFFFFFFFFFF}
    assert malformed(han.pcap) == ""
    rows = fields(han.pcap, "zbee_aps.cluster == 0x0702 && zbee_zcl.cmd.id == 0x02",
                  ["zbee_zcl_se.met.attr_id"])
    assert {int(a, 16) for r in rows for a in r[0].split("|")} == {0x0800, 0x0801, 0x0806, 0x0805}

    # a restart keeps them; then the store is edited behind the meter's back
    again = tmp_path / "again"
    again.mkdir()
    han2 = Han(again, start=START + 3600, data_dir=data)
    await han2.start()
    try:
        kept = await han2.read([0x0800, 0x0801])
    finally:
        await han2.stop()
    assert {k: int(v) for k, v in kept.items()} == {0x0800: 0x0041, 0x0801: 0x00010000}
    db = sqlite3.connect(data / "meter.db")
    n = db.execute("UPDATE records SET value=replace(value, '2049', '2050') "
                   "WHERE kind='config' AND key='alarm_masks'").rowcount
    db.commit()
    db.close()
    assert n == 2  # both copies edited: no intact copy is left
    third = tmp_path / "third"
    third.mkdir()
    han3 = Han(third, start=START + 7200, data_dir=data)
    await han3.start()
    try:
        after = await han3.read([0x0800, 0x0204, 0x0200])
    finally:
        await han3.stop()
    assert int(after[0x0800]) == 0xFFFF  # not used: the defaults
    assert int(after[0x0204]) & 0x20  # NV memory error
    assert int(after[0x0200]) & 0x01  # Check Meter
