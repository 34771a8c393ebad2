"""sep.store.checked: the checksum of a small record file, and errors that name the file.

The checksum is recomputed here from the documented rule (CRC-32/ISO-HDLC of the other fields'
JSON with sorted keys and no spaces, 8 lowercase hex digits), with binascii, not zlib."""

from __future__ import annotations

import binascii
import json

import pytest

from sep.store.checked import CorruptFile, seal, unseal

DOC = {"ieee": "00:0d:6f:00:00:00:aa:01", "n": 3, "nested": {"b": 1, "a": [1, 2]}}


def test_the_checksum_is_crc32_of_the_canonical_json():
    sealed = json.loads(seal(DOC))
    text = '{"ieee":"00:0d:6f:00:00:00:aa:01","n":3,"nested":{"a":[1,2],"b":1}}'
    assert sealed.pop("crc32") == f"{binascii.crc32(text.encode()):08x}"
    assert sealed == DOC
    # an old checksum in the input is replaced, not kept
    assert json.loads(seal({**DOC, "crc32": "00000000"}))["crc32"] != "00000000"


@pytest.mark.parametrize("data, why", [
    (b'{"ieee": "00:0d', "not readable JSON"),  # a torn write
    (b"\xff\xfe{}", "not readable JSON"),  # not even text
    (b"[1, 2]", "not a JSON object"),
    (b'"text"', "not a JSON object"),
])
def test_unreadable_records_name_the_file(data, why):
    with pytest.raises(CorruptFile) as err:
        unseal(data, "download.json")
    assert "download.json" in str(err.value) and why in str(err.value)


def test_a_flipped_value_or_a_bad_checksum_names_the_file():
    good = seal(DOC)
    for bad in (good.replace(b'"n": 3', b'"n": 4'), good.replace(b'"crc32": "', b'"crc32": "0'),
                good.replace(b'"crc32": "', b'"crc32": 1, "x": "')):
        with pytest.raises(CorruptFile, match="boot.json fails its checksum"):
            unseal(bad, "boot.json")
    upper = {**json.loads(good)}
    upper["crc32"] = upper["crc32"].upper()  # hex digits in either case
    assert unseal(json.dumps(upper)) == DOC
