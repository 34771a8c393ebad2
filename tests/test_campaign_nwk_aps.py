"""Template and hook for the NWK/APS security header campaign (issue 18), for the secure HAN.

The radio layer is being rewritten for Zigbee NWK/APS security (frames on the air become
real encrypted bytes). Until it lands there is no decoder to aim at; this module holds the
campaign ready for it:

- :func:`secure_nwk` builds a secured NWK frame (auxiliary header: security control with
  the level sent as 0, frame counter, extended source, key sequence number; CCM* level 5
  with a 4-byte MIC over the NWK header and the auxiliary header with the level set back
  to 5) with ``radios.crypto``; it reproduces the published level-5 frame of
  ``vectors/zigbee-crypto.json`` byte for byte;
- :class:`SecuredFrames` generates them structure-aware — valid frames with fresh
  counters, and the damage a receiver must refuse: a MIC or ciphertext bit flipped, a
  replayed or an all-ones counter, another key id (data, key-transport, key-load), a key
  sequence number that is not the current one, reserved bits, level bits set on the air,
  a cut auxiliary header — each with the verdict a receiver must reach;
- :func:`run_campaign` drives any :class:`SecureReceiver` with them and fails on an
  exception, a wrong verdict, or a frame accepted twice.

**Hook:** implement :class:`SecureReceiver` over the new decoder (``radios/``: a node's
NWK layer given the network key, its key sequence number and a frame-counter table) and
point ``test_nwk_aps_campaign`` at it (remove its skip). APS security (link keys, key id
0, no key sequence number) follows the same shape: add an ``aps`` mode to
:class:`SecuredFrames` with the APS header as the authenticated data.

What runs now: the encoding against the published vector, and the campaign loop against
a small model receiver, so the generator and the oracle are known to work when the real
decoder arrives.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Protocol

import pytest
from fuzzgen import Campaign

from radios import crypto

# the project's shared vectors, next to the checkout (or a level above a worktree's)
VECTORS = next((p / "shared" / "vectors" for p in Path(__file__).resolve().parents
                if (p / "shared" / "vectors").is_dir()), Path("shared") / "vectors")
KEY_ID_NETWORK = 1 << 3
EXT_NONCE = 0x20
NETWORK_KEY = bytes.fromhex("fb39caadd50fef910949baa89504f5d9")
ACCEPT, DROP = "accept", "drop"


def secure_nwk(key: bytes, nwk_header: bytes, counter: int, source_ieee_le: bytes, key_seq: int,
               payload: bytes, control: int = KEY_ID_NETWORK | EXT_NONCE) -> bytes:
    """NWK header ‖ auxiliary header (level 0 on the air) ‖ CCM* ciphertext ‖ MIC."""
    aux = bytes([control]) + counter.to_bytes(4, "little")
    if control & EXT_NONCE:
        aux += source_ieee_le
    if control & 0x18 == KEY_ID_NETWORK:
        aux += bytes([key_seq])
    aad = nwk_header + bytes([control | 0x05]) + aux[1:]
    sealed = crypto.encrypt(key, crypto.nonce(source_ieee_le, counter, control), payload, aad)
    return nwk_header + aux + sealed


class SecureReceiver(Protocol):
    """The hook: a node's NWK layer. ``receive`` returns ``"accept"`` (the payload went up)
    or ``"drop"``; it must never raise."""

    def receive(self, frame: bytes) -> str: ...


class SecuredFrames:
    """Secured NWK frames from one sender, valid or damaged, with the verdict due."""

    DAMAGE = ("mic", "ciphertext", "replay", "counter all ones", "key id data",
              "key id key-transport", "key id key-load", "key sequence", "reserved bits",
              "level on air", "cut aux", "cut mic")

    def __init__(self, rng: random.Random, key: bytes = NETWORK_KEY, key_seq: int = 0) -> None:
        self.rng = rng
        self.key = key
        self.key_seq = key_seq
        self.source = rng.randbytes(8)
        self.counter = rng.randrange(1, 1 << 20)
        self.sent: list[tuple[int, bytes]] = []

    def nwk_header(self) -> bytes:
        seq = self.rng.randrange(256)
        return bytes([0x48, 0x02, 0x00, 0x00, 0x01, 0x00, 0x1E, seq])  # data, v2, security

    def frame(self) -> tuple[bytes, str, str]:
        rng = self.rng
        payload = rng.randbytes(rng.randrange(1, 60))
        if rng.random() < 0.5:
            self.counter += 1
            frame = secure_nwk(self.key, self.nwk_header(), self.counter, self.source,
                               self.key_seq, payload)
            self.sent.append((self.counter, frame))
            return frame, ACCEPT, "valid"
        damage = rng.choice(self.DAMAGE)
        counter = self.counter + 1
        control = KEY_ID_NETWORK | EXT_NONCE
        key_seq = self.key_seq
        if damage == "replay" and self.sent:
            return rng.choice(self.sent)[1], DROP, damage
        if damage == "counter all ones":
            counter = 0xFFFFFFFF
        elif damage.startswith("key id"):
            control = EXT_NONCE | {"data": 0, "key-transport": 2, "key-load": 3}[
                damage.split()[-1]] << 3
        elif damage == "key sequence":
            key_seq = (key_seq + 1) & 0xFF
        elif damage == "reserved bits":
            control |= 0xC0
        frame = bytearray(secure_nwk(self.key, self.nwk_header(), counter, self.source, key_seq,
                                     payload, control))
        aux_at = 8
        if damage == "mic":
            frame[-1] ^= 1 << rng.randrange(8)
        elif damage == "ciphertext":
            frame[aux_at + 14 + rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
        elif damage == "level on air":
            frame[aux_at] |= rng.randrange(1, 8)
        elif damage == "cut aux":
            del frame[aux_at + rng.randrange(1, 14):]
        elif damage == "cut mic":
            del frame[-rng.randrange(1, 5):]
        return bytes(frame), DROP, damage


def run_campaign(target: SecureReceiver, name: str, seed: int, count: int) -> list[str]:
    camp = Campaign.make(name, seed, count)
    frames = SecuredFrames(camp.rng())
    found = []
    for i in range(camp.count):
        frame, due, what = frames.frame()
        try:
            verdict = target.receive(frame)
        except Exception as exc:  # noqa: BLE001 - counted: an internal exception
            camp.internal_exceptions += 1
            verdict = f"raised {exc!r}"
        camp.frames += 1
        camp.outcomes[f"{what} {verdict}"] += 1
        if verdict != due:
            camp.unentitled += verdict == ACCEPT
            found.append(f"#{i} {what}: {verdict}, due {due}: {frame.hex()}")
            if len(found) > 10:
                break
    camp.report()
    return found


class ModelReceiver:
    """A minimal model of a secure NWK receiver (one network key, a frame-counter table):
    what the campaign's oracle expects, to test the harness until the real one exists."""

    def __init__(self, key: bytes = NETWORK_KEY, key_seq: int = 0) -> None:
        self.key, self.key_seq = key, key_seq
        self.counters: dict[bytes, int] = {}

    def receive(self, frame: bytes) -> str:
        header, aux = frame[:8], frame[8:]
        if len(aux) < 14 + 4 or aux[0] & 0x07 or aux[0] & 0xC0:
            return DROP
        control = aux[0]
        if control & 0x18 != KEY_ID_NETWORK or not control & EXT_NONCE:
            return DROP
        counter = int.from_bytes(aux[1:5], "little")
        source, key_seq = aux[5:13], aux[13]
        if key_seq != self.key_seq or counter == 0xFFFFFFFF \
                or counter <= self.counters.get(source, -1):
            return DROP
        aad = header + bytes([control | 0x05]) + aux[1:14]
        plain = crypto.decrypt(self.key, crypto.nonce(source, counter, control), aux[14:], aad)
        if plain is None:
            return DROP
        self.counters[source] = counter
        return ACCEPT


def test_secured_frames_match_the_published_vector():
    path = VECTORS / "zigbee-crypto.json"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing")
        pytest.skip("shared vectors not here")
    v = json.loads(path.read_text())["ccm_star_level5_nwk_frame"]
    mac = bytes.fromhex(v["mac_frame_hex"])
    nwk = mac[9:-2]  # the MAC header is 9 bytes, the FCS 2
    aux = nwk[8:]
    built = secure_nwk(bytes.fromhex(v["network_key_hex"]), nwk[:8],
                       int.from_bytes(aux[1:5], "little"), aux[5:13], aux[13],
                       bytes.fromhex(v["plaintext_hex"]), control=aux[0])
    assert built == nwk


def test_the_campaign_harness_against_the_model_receiver():
    assert run_campaign(ModelReceiver(), "nwk-aux-harness", 20272, 3000) == []


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a campaign, not a hang
@pytest.mark.skip(reason="hook: waiting for the secure HAN (radios/ rewrite); implement "
                  "SecureReceiver over the new NWK decoder and remove this skip")
def test_nwk_aps_campaign():
    target: SecureReceiver = ModelReceiver()  # replace with the real decoder
    assert run_campaign(target, "nwk-aux", 10, 100_000) == []
