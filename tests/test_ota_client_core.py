"""The meter's OTA client core (sans-IO), driven command by command.

Independent truth: every server→client command is built with zigpy's own OTA cluster schemas
(``Ota.client_commands``), every client→server frame is decoded with zigpy's
``Ota.server_commands`` schemas (nothing left over), command ids, status codes (SUCCESS 0x00,
ABORT 0x95, INVALID_IMAGE 0x96, WAIT_FOR_DATA 0x97, NO_IMAGE_AVAILABLE 0x98), attribute ids
and ImageUpgradeStatus values are the ZCL OTA cluster's (zigpy's attribute table and enums),
the Image Notify jitter rule is the spec's (a random 1..100 <= QueryJitter), and what reaches
storage is read back from the real :class:`FileSink` files. The end-to-end misdelivery tests
(hubsim's duplicate/reorder/late faults) live in test_ota_misdelivery.py.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from zigpy.zcl.clusters.general import Ota

from sep.ota.client import Effect, Frame, OtaClient
from sep.ota.staging import FileSink

MFR, TYPE, CURRENT, NEW = 0x1234, 0x0001, 0x00010001, 0x00010002
SERVER = (0x0000, 1)
ATTR = {a.name: a.id for a in Ota.attributes.values()}
STATUS = Ota.ImageUpgradeStatus
SUCCESS, ABORT, INVALID_IMAGE, WAIT_FOR_DATA, NO_IMAGE_AVAILABLE = 0x00, 0x95, 0x96, 0x97, 0x98
PAYLOAD = bytes((i * 37 + 11) & 0xFF for i in range(5000))


class FixedRandom(random.Random):
    """The jitter draw the test chooses (the spec: a random number 1..100)."""

    def __init__(self, draw: int) -> None:
        super().__init__(0)
        self.draw = draw

    def randint(self, a: int, b: int) -> int:
        assert (a, b) == (1, 100)
        return self.draw


def cmd(name: str, **fields: Any) -> tuple[int, bytes]:
    for command_id, c in Ota.client_commands.items():
        if c.name == name:
            return command_id, c.schema(**fields).serialize()
    raise KeyError(name)


def decode(frame: Output) -> tuple[str, Any]:
    assert isinstance(frame, Frame), frame
    c = Ota.server_commands[frame.command_id]
    args, rest = c.schema.deserialize(frame.payload)
    assert rest == b""
    return c.name, args


Output = Frame | Effect


def frames(out: list[Output]) -> list[tuple[str, Any]]:
    return [decode(o) for o in out if isinstance(o, Frame)]


def steps(out: list[Output]) -> list[str]:
    return [o.data["step"] if o.name == "log" else o.name for o in out if isinstance(o, Effect)]


_SINKS: list[FileSink] = []


def settled() -> None:
    """The sinks made so far have finished their background fsyncs and records (what a
    clean stop, or the next start of the process, sees)."""
    for sink in _SINKS:
        _ = sink.durable_offset  # waits for its sync thread


def on_disk(tmp_path: Path) -> Any:
    """The download record as the next start reads it."""
    settled()
    return FileSink(tmp_path / "dl").state()


def make(tmp_path: Path, **kw: Any) -> OtaClient:
    settled()  # a restart: the earlier client's sink is done
    sink = FileSink(tmp_path / "dl")
    _SINKS.append(sink)
    args: dict[str, Any] = {"manufacturer": MFR, "image_type": TYPE, "current_version": CURRENT,
                            "sink": sink, "page_size": 0,
                            "rng": random.Random(7)}
    args.update(kw)
    return OtaClient(**args)


def offer(client: OtaClient, now: float, *, size: int = len(PAYLOAD), version: int = NEW,
          mfr: int = MFR, image_type: int = TYPE, src: tuple[int, int] | None = SERVER,
          ) -> list[Output]:
    return client.on_command(*cmd("query_next_image_response", status=SUCCESS,
                                  manufacturer_code=mfr, image_type=image_type,
                                  file_version=version, image_size=size), now, src=src)


def block(client: OtaClient, offset: int, now: float, *, data: bytes | None = None,
          version: int = NEW, src: tuple[int, int] | None = SERVER) -> list[Output]:
    if data is None:
        data = PAYLOAD[offset: offset + 64]
    return client.on_command(*cmd("image_block_response", status=SUCCESS, manufacturer_code=MFR,
                                  image_type=TYPE, file_version=version, file_offset=offset,
                                  image_data=data), now, src=src)


def started(tmp_path: Path, **kw: Any) -> tuple[OtaClient, list[Output]]:
    client = make(tmp_path, **kw)
    client.set_server(*SERVER, now=0.0)
    return client, offer(client, 0.0)


def download_all(client: OtaClient, out: list[Output], now: float = 1.0) -> list[Output]:
    """Answer every block request with the right bytes until the client stops asking."""
    while True:
        reqs = frames(out)
        if not reqs:
            return out
        name, args = reqs[-1]
        assert name == "image_block"
        out = block(client, args.file_offset, now,
                    data=PAYLOAD[args.file_offset: args.file_offset + args.maximum_data_size])


# ------------------------------------------------------------------- discovery and query


def test_without_a_server_it_asks_for_discovery_every_30_seconds(tmp_path: Path) -> None:
    client = make(tmp_path)
    assert steps(client.tick(0.0)) == ["discover"]
    assert client.tick(29.9) == []
    assert steps(client.tick(30.0)) == ["discover"]


def test_query_next_image_decodes_with_zigpy(tmp_path: Path) -> None:
    client = make(tmp_path, query_interval=100.0)
    (name, args), = frames(client.set_server(*SERVER, now=5.0))
    assert name == "query_next_image"
    assert args.field_control == 0 and args.hardware_version is None
    assert (args.manufacturer_code, args.image_type, args.current_file_version) == (
        MFR, TYPE, CURRENT)
    assert client.tick(104.9) == []
    assert [n for n, _ in frames(client.tick(105.0))] == ["query_next_image"]
    assert [n for n, _ in frames(client.query_now(106.0))] == ["query_next_image"]
    hw = make(tmp_path, hardware_version=0x0203)
    (name, args), = frames(hw.set_server(*SERVER, now=0.0))
    assert args.field_control == Ota.QueryNextImageCommand.FieldControl.HardwareVersion
    assert args.hardware_version == 0x0203


def test_attributes_use_the_cluster_ids(tmp_path: Path) -> None:
    client = make(tmp_path)
    assert client.attributes() == {
        ATTR["file_offset"]: 0xFFFFFFFF,
        ATTR["current_file_version"]: CURRENT,
        ATTR["downloaded_file_version"]: 0xFFFFFFFF,
        ATTR["image_upgrade_status"]: STATUS.Normal,
        ATTR["manufacturer_id"]: MFR,
        ATTR["image_type_id"]: TYPE,
        ATTR["minimum_block_req_delay"]: 0,
    }
    client, out = started(tmp_path)
    block(client, 0, 1.0)
    attrs = client.attributes()
    assert attrs[ATTR["file_offset"]] == 64
    assert attrs[ATTR["downloaded_file_version"]] == NEW
    assert attrs[ATTR["image_upgrade_status"]] == STATUS.Download_in_progress


def test_offers_it_refuses_and_the_one_it_takes(tmp_path: Path) -> None:
    client = make(tmp_path, precheck=lambda ident: "POLICY: no" if ident.size == 999 else None)
    client.set_server(*SERVER, now=0.0)
    no_image = client.on_command(*cmd("query_next_image_response", status=NO_IMAGE_AVAILABLE),
                                 1.0, src=SERVER)
    assert no_image == [] and client.ident is None
    for kw, why in (({"mfr": MFR + 1}, "another device"), ({"image_type": TYPE + 1}, "another"),
                    ({"version": CURRENT}, "not newer"), ({"version": CURRENT - 1}, "not newer"),
                    ({"size": 999}, "POLICY: no")):
        out = offer(client, 1.0, **kw)  # type: ignore[arg-type]
        assert steps(out) == ["refused"] and frames(out) == [], kw
        assert why in out[0].data["reason"] and client.refused == out[0].data["reason"]
        assert client.attributes()[ATTR["image_upgrade_status"]] == STATUS.Normal
    out = offer(client, 2.0, src=(0x0000, 9))  # offered from another endpoint: download from it
    assert steps(out) == ["download started"] and client.refused is None
    assert out[0].data == {"step": "download started", "file_version": NEW, "offset": 0,
                           "size": len(PAYLOAD)}
    assert client.server == (0x0000, 9)
    (name, args), = frames(out)
    assert name == "image_block" and args.field_control == 0
    assert (args.manufacturer_code, args.image_type, args.file_version, args.file_offset,
            args.maximum_data_size) == (MFR, TYPE, NEW, 0, 64)
    # a second offer while downloading changes nothing
    assert offer(client, 3.0, version=NEW + 1) == [] and client.ident.file_version == NEW


# ------------------------------------------------------------------------------- blocks


def test_block_download_writes_the_image_and_asks_for_verification(tmp_path: Path) -> None:
    client, out = started(tmp_path, max_data_size=100)
    out = download_all(client, out)
    assert steps(out) == ["downloaded", "verify"]
    assert [o.data for o in out] == [{"step": "downloaded", "file_version": NEW},
                                     {"file_version": NEW}]
    assert (tmp_path / "dl" / "download.bin").read_bytes() == PAYLOAD
    assert on_disk(tmp_path).offset == len(PAYLOAD)  # type: ignore[union-attr]
    assert client.attributes()[ATTR["image_upgrade_status"]] == STATUS.Download_complete
    assert client.tick(100.0) == []  # nothing to do until the verdict


def test_last_block_is_asked_for_with_only_the_bytes_left(tmp_path: Path) -> None:
    client, out = started(tmp_path)
    for off in range(0, 4992, 64):
        out = block(client, off, 1.0)
    (name, args), = frames(out)
    assert (args.file_offset, args.maximum_data_size) == (4992, 8)


def test_blocks_that_are_not_the_one_asked_for_are_not_taken(tmp_path: Path) -> None:
    client, _ = started(tmp_path)
    block(client, 0, 1.0)
    for wrong in (
        lambda: block(client, 128, 1.0),  # from ahead
        lambda: block(client, 0, 1.0),  # a duplicate
        lambda: block(client, 64, 1.0, data=b""),  # empty
        lambda: block(client, 64, 1.0, version=NEW + 1),  # another image
        lambda: block(client, 64, 1.0, src=(0x1234, 1)),  # another node
        lambda: client.on_command(*cmd("image_block_response", status=NO_IMAGE_AVAILABLE),
                                  1.0, src=SERVER),
    ):
        assert wrong() == [] and client.offset == 64
    # the image bytes on disk are the first block only
    client.sink.flush()
    assert (tmp_path / "dl" / "download.bin").read_bytes() == PAYLOAD[:64]
    assert frames(block(client, 64, 1.0))[0][1].file_offset == 128
    # a block that runs past the offered size is not taken either
    small = make(tmp_path / "small")
    small.set_server(*SERVER, now=0.0)
    offer(small, 0.0, size=100)
    block(small, 0, 1.0)
    assert block(small, 64, 1.0) == [] and small.offset == 64
    assert steps(block(small, 64, 1.0, data=PAYLOAD[64:100])) == ["downloaded", "verify"]


def test_blocks_are_made_durable_every_4096_bytes(tmp_path: Path) -> None:
    client, _ = started(tmp_path)
    for off in range(0, 4096 - 64, 64):
        block(client, off, 1.0)
    assert on_disk(tmp_path).offset == 0  # type: ignore[union-attr]
    block(client, 4096 - 64, 1.0)
    assert on_disk(tmp_path).offset == 4096  # type: ignore[union-attr]
    block(client, 4096, 1.0)
    assert on_disk(tmp_path).offset == 4096  # type: ignore[union-attr]


def test_a_restart_resumes_from_the_durable_offset_of_the_same_image(tmp_path: Path) -> None:
    client, _ = started(tmp_path)
    for off in range(0, 4096, 64):
        block(client, off, 1.0)
    again = make(tmp_path)  # a restart: a new client on the same storage
    again.set_server(*SERVER, now=0.0)
    out = offer(again, 0.0)
    assert steps(out) == ["resumed"] and out[0].data["offset"] == 4096
    assert frames(out)[0][1].file_offset == 4096
    assert again.restarts_from_zero == 0
    out = download_all(again, out)
    assert (tmp_path / "dl" / "download.bin").read_bytes() == PAYLOAD
    # another image on the same storage starts from zero
    other = make(tmp_path)
    other.set_server(*SERVER, now=0.0)
    out = offer(other, 0.0, version=NEW + 1)
    assert steps(out) == ["download started"] and frames(out)[0][1].file_offset == 0
    # a record that says the whole image is there goes straight to verification
    done = make(tmp_path / "b")
    done.set_server(*SERVER, now=0.0)
    offer(done, 0.0, size=64)
    block(done, 0, 1.0)
    full = make(tmp_path / "b")
    full.set_server(*SERVER, now=0.0)
    assert steps(offer(full, 0.0, size=64)) == ["resumed", "downloaded", "verify"]


def test_wait_for_data_and_the_minimum_block_period(tmp_path: Path) -> None:
    client, _ = started(tmp_path)
    out = client.on_command(*cmd("image_block_response", status=WAIT_FOR_DATA, current_time=100,
                                 request_time=105, minimum_block_period=250), 10.0, src=SERVER)
    assert out == []
    assert client.attributes()[ATTR["minimum_block_req_delay"]] == 250
    assert client.tick(14.9) == [] and client.tick(14.95) == []
    (name, args), = frames(client.tick(15.0))
    assert name == "image_block" and args.file_offset == 0
    assert args.field_control == Ota.ImageBlockCommand.FieldControl.MinimumBlockPeriod
    assert args.minimum_block_period == 250
    # after a block, the next request waits the minimum block period (ms)
    assert block(client, 0, 20.0) == []
    assert client.tick(20.2) == []
    assert frames(client.tick(20.25))[0][1].file_offset == 64
    # a request time in the past means: ask again now
    client.on_command(*cmd("image_block_response", status=WAIT_FOR_DATA, current_time=500,
                           request_time=400, minimum_block_period=0), 30.0, src=SERVER)
    assert client.attributes()[ATTR["minimum_block_req_delay"]] == 0
    (name, args), = frames(client.tick(30.0))
    assert args.field_control == 0 and args.minimum_block_period is None


def test_timeouts_retry_the_same_offset_with_exponential_backoff(tmp_path: Path) -> None:
    client, out = started(tmp_path, timeout=2.0, backoff_max=20.0)
    block(client, 0, 0.0)  # the next request (offset 64) went out at t=0
    sent: list[float] = []
    t = 0.0
    while t < 200 and len(sent) < 6:
        t = round(t + 0.5, 1)
        for name, args in frames(client.tick(t)):
            assert name == "image_block" and args.file_offset == 64
            sent.append(t)
    # first retry after the timeout, then 2x, 4x, ... capped at backoff_max
    assert sent == [2.0, 6.0, 14.0, 30.0, 50.0, 70.0]
    assert client.timeouts == 6 and client.restarts_from_zero == 0
    # an answer resets the backoff
    block(client, 64, 71.0)
    assert [a.file_offset for _, a in frames(client.tick(73.0))] == [128]


def test_abort_discards_the_download(tmp_path: Path) -> None:
    client, _ = started(tmp_path)
    block(client, 0, 1.0)
    out = client.on_command(*cmd("image_block_response", status=ABORT), 2.0, src=SERVER)
    assert steps(out) == ["aborted"] and out[0].data["file_version"] == NEW
    assert not (tmp_path / "dl" / "download.bin").exists()
    assert client.attributes()[ATTR["image_upgrade_status"]] == STATUS.Normal
    assert client.attributes()[ATTR["file_offset"]] == 0xFFFFFFFF
    assert block(client, 64, 3.0) == []  # nothing is downloading now


# -------------------------------------------------------------------------------- pages


def test_pages_stream_blocks_and_flush_at_each_page(tmp_path: Path) -> None:
    client, out = started(tmp_path, page_size=128, response_spacing_ms=20)
    (name, args), = frames(out)
    assert name == "image_page"
    assert (args.file_offset, args.maximum_data_size, args.page_size, args.response_spacing) == (
        0, 64, 128, 20)
    assert block(client, 0, 1.0) == []  # more of this page is coming
    assert client.tick(3.5) == []  # ... and its deadline moved with the block
    assert on_disk(tmp_path).offset == 0  # type: ignore[union-attr]
    (name, args), = frames(block(client, 64, 1.5))
    assert (name, args.file_offset, args.page_size) == ("image_page", 128, 128)
    assert on_disk(tmp_path).offset == 128  # type: ignore[union-attr]
    for off in range(128, 4864, 64):
        out = block(client, off, 2.0)
    (name, args), = frames(out)
    assert (args.file_offset, args.page_size, args.maximum_data_size) == (4864, 128, 64)
    block(client, 4864, 2.0)
    out = block(client, 4928, 2.0)
    (name, args), = frames(out)
    assert (args.file_offset, args.page_size, args.maximum_data_size) == (4992, 8, 8)


def test_pages_unanswered_fall_back_to_blocks_at_the_same_offset(tmp_path: Path) -> None:
    client, out = started(tmp_path, page_size=256, timeout=1.0, backoff_max=4.0)
    names = [frames(out)[0][0]]
    for t in range(1, 40):
        names += [n for n, a in frames(client.tick(float(t))) if a.file_offset == 0]
    assert names[:4] == ["image_page", "image_page", "image_page", "image_block"]
    assert set(names[4:]) == {"image_block"}


# ----------------------------------------------------------------- verdict and upgrade end


def test_a_verified_image_is_reported_and_scheduled_by_the_server(tmp_path: Path) -> None:
    client, out = started(tmp_path)
    assert client.verified(True, None, 50.0) == []  # not downloaded yet
    download_all(client, out)
    out = client.verified(True, None, 100.0)
    assert steps(out) == ["verified"]
    (name, args), = frames(out)
    assert name == "upgrade_end" and args.status == SUCCESS
    assert (args.manufacturer_code, args.image_type, args.file_version) == (MFR, TYPE, NEW)
    end = {"manufacturer_code": MFR, "image_type": TYPE, "file_version": NEW}
    # wait for a further command (upgrade time 0xFFFFFFFF)
    out = client.on_command(*cmd("upgrade_end_response", current_time=0, upgrade_time=0xFFFFFFFF,
                                 **end), 101.0, src=SERVER)
    assert steps(out) == ["waiting for upgrade command"]
    assert client.attributes()[ATTR["image_upgrade_status"]] == STATUS.Waiting_to_upgrade
    assert client.tick(10_000.0) == []
    # then: upgrade 30 s after the server's current time, wildcards for the identity
    out = client.on_command(*cmd("upgrade_end_response", manufacturer_code=0xFFFF,
                                 image_type=0xFFFF, file_version=0xFFFFFFFF,
                                 current_time=1000, upgrade_time=1030), 200.0, src=SERVER)
    assert steps(out) == ["upgrade scheduled"] and out[0].data["in_seconds"] == 30
    assert client.tick(229.9) == []
    out = client.tick(230.0)
    assert [(o.name, o.data) for o in out] == [("apply", {"file_version": NEW})]
    assert client.attributes()[ATTR["image_upgrade_status"]] == STATUS.Count_down


def test_upgrade_time_in_the_past_applies_at_once(tmp_path: Path) -> None:
    client, out = started(tmp_path)
    download_all(client, out)
    client.verified(True, None, 10.0)
    out = client.on_command(*cmd("upgrade_end_response", manufacturer_code=MFR, image_type=TYPE,
                                 file_version=NEW, current_time=500, upgrade_time=400),
                            11.0, src=SERVER)
    assert steps(out) == ["upgrade scheduled", "apply"] and out[0].data["in_seconds"] == 0


def test_upgrade_end_responses_for_another_image_are_ignored(tmp_path: Path) -> None:
    client, out = started(tmp_path)
    download_all(client, out)
    early = client.on_command(*cmd("upgrade_end_response", manufacturer_code=MFR, image_type=TYPE,
                                   file_version=NEW, current_time=0, upgrade_time=0), 5.0,
                              src=SERVER)
    assert early == []  # before our own Upgrade End Request said SUCCESS
    client.verified(True, None, 10.0)
    for fields in ({"manufacturer_code": MFR + 1}, {"image_type": TYPE + 1},
                   {"file_version": NEW + 1}):
        end = {"manufacturer_code": MFR, "image_type": TYPE, "file_version": NEW,
               "current_time": 0, "upgrade_time": 0, **fields}
        assert client.on_command(*cmd("upgrade_end_response", **end), 11.0, src=SERVER) == []
    assert client.attributes()[ATTR["image_upgrade_status"]] == STATUS.Download_complete


def test_upgrade_end_request_is_repeated_five_times_then_the_image_waits(tmp_path: Path) -> None:
    client, out = started(tmp_path, timeout=1.0, backoff_max=1000.0)
    download_all(client, out)
    client.verified(True, None, 0.0)
    sent = []
    for t in range(1, 200):
        for name, args in frames(client.tick(float(t))):
            assert name == "upgrade_end" and args.status == SUCCESS
            sent.append(t)
    assert sent == [1, 3, 7, 15, 31]


def test_an_invalid_image_is_reported_and_discarded(tmp_path: Path) -> None:
    client, out = started(tmp_path)
    download_all(client, out)
    out = client.verified(False, "BAD_SIGNATURE: x", 10.0)
    assert steps(out) == ["rejected"] and out[0].data["reason"] == "BAD_SIGNATURE: x"
    (name, args), = frames(out)
    assert name == "upgrade_end" and args.status == INVALID_IMAGE
    assert (args.manufacturer_code, args.image_type, args.file_version) == (MFR, TYPE, NEW)
    assert not (tmp_path / "dl" / "download.bin").exists()
    assert client.attributes()[ATTR["image_upgrade_status"]] == STATUS.Normal
    assert client.attributes()[ATTR["file_offset"]] == 0xFFFFFFFF
    assert client.tick(11.0) == []
    # without a reason the log still says why
    client2, out2 = started(tmp_path / "2")
    download_all(client2, out2)
    assert client2.verified(False, None, 1.0)[0].data["reason"] == "invalid image"


# ------------------------------------------------------------------------------- notify


def notify(client: OtaClient, now: float, ptype: int, *, jitter: int = 100,
           broadcast: bool = False, src: tuple[int, int] | None = SERVER, **fields: int,
           ) -> list[Output]:
    return client.on_command(*cmd("image_notify", payload_type=ptype, query_jitter=jitter,
                                  **fields), now, src=src, broadcast=broadcast)


def queried(out: list[Output]) -> bool:
    return [n for n, _ in frames(out)] == ["query_next_image"]


def test_image_notify_filters_per_payload_type(tmp_path: Path) -> None:
    client = make(tmp_path, query_interval=1e9)
    assert queried(notify(client, 0.0, 0)) and client.server == SERVER
    for ptype, fields in ((1, {"manufacturer_code": MFR + 1}),
                          (2, {"manufacturer_code": MFR, "image_type": TYPE + 1}),
                          (3, {"manufacturer_code": MFR, "image_type": TYPE,
                               "new_file_version": CURRENT})):
        assert notify(client, 1.0, ptype, **fields) == [], ptype
    for ptype, fields in ((1, {"manufacturer_code": 0xFFFF}),
                          (1, {"manufacturer_code": MFR}),
                          (2, {"manufacturer_code": MFR, "image_type": 0xFFFF}),
                          (3, {"manufacturer_code": 0xFFFF, "image_type": TYPE,
                               "new_file_version": 0xFFFFFFFF}),
                          (3, {"manufacturer_code": MFR, "image_type": TYPE,
                               "new_file_version": CURRENT + 1})):
        assert queried(notify(client, 2.0, ptype, **fields)), (ptype, fields)


def test_broadcast_notify_obeys_the_query_jitter(tmp_path: Path) -> None:
    for jitter in (0, 101, 255):  # outside 1..100: the notify is ignored
        client = make(tmp_path, query_interval=1e9, rng=FixedRandom(1))
        client.server = SERVER
        client.next_query_at = 1e9
        assert notify(client, 0.0, 0, jitter=jitter, broadcast=True) == []
        assert client.tick(5.0) == []
    for draw, jitter, answers in ((50, 50, True), (51, 50, False), (1, 1, True), (100, 100, True),
                                  (2, 1, False)):
        client = make(tmp_path, query_interval=1e9, rng=FixedRandom(draw))
        client.server = SERVER
        client.next_query_at = 1e9
        notify(client, 0.0, 0, jitter=jitter, broadcast=True)
        assert queried(client.tick(1.0)) is answers, (draw, jitter)
    # a unicast notify needs no draw
    client = make(tmp_path, query_interval=1e9, rng=FixedRandom(100))
    client.server = SERVER
    assert queried(notify(client, 0.0, 0, jitter=1))


def test_notify_while_downloading_and_commands_from_strangers(tmp_path: Path) -> None:
    client, _ = started(tmp_path)
    assert notify(client, 1.0, 0) == []
    assert client.on_command(*cmd("query_next_image_response", status=SUCCESS,
                                  manufacturer_code=MFR, image_type=TYPE, file_version=NEW + 5,
                                  image_size=10), 1.0, src=(0x4321, 1)) == []
    assert client.ident is not None and client.ident.file_version == NEW
    with pytest.raises(KeyError):
        client.on_command(0x42, b"", 1.0, src=SERVER)
    with pytest.raises(ValueError):
        client.on_command(0x05, b"", 1.0, src=SERVER)
