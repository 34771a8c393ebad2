"""Key Establishment (0x0800), SE 1.4 Annex C.3, as a declarative table on zigpy's types.

zigpy defines Key Establishment as an empty stub; this subclass carries the attribute and the
commands and stays out of zigpy's registry (``_skip_registry``). The payloads agree field for
field with Wireshark's key-establishment dissector (``packet-zbee-zcl-se.c``, our judge).

The command set is symmetrical. Client→server (received by the responder, the server):
InitiateKeyEstablishmentRequest 0x00, EphemeralDataRequest 0x01, ConfirmKeyDataRequest 0x02,
TerminateKeyEstablishment 0x03. Server→client (received by the initiator, the client):
InitiateKeyEstablishmentResponse 0x00, EphemeralDataResponse 0x01, ConfirmKeyDataResponse
0x02, TerminateKeyEstablishment 0x03.

- Initiate request/response: KeyEstablishmentSuite (u16, one suite bit), Ephemeral Data
  Generate Time (u8, s), Confirm Key Generate Time (u8, s), Identity = the sender's implicit
  certificate (48 bytes for suite 1, 74 for suite 2).
- Ephemeral data: the ephemeral public key, compressed (22 bytes suite 1, 37 suite 2).
- Confirm key data: the MAC (MACU from the initiator, MACV from the responder), 16 bytes.
- Terminate: status (:class:`KeStatus`), wait time (u8, s), KeyEstablishmentSuite (u16).

The KeyEstablishmentSuite attribute (0x0000, server and client side alike) is a 16-bit value
with one bit per supported suite: bit 0 suite 1 (sect163k1), bit 1 suite 2 (sect283k1).
"""

from __future__ import annotations

from typing import Final

import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLAttributeDef, ZCLCommandDef

CLUSTER_ID = 0x0800

#: suite numbers and their bit in KeyEstablishmentSuite values (suite n is bit n-1)
SUITE_1 = 0x0001  # CBKE, sect163k1, 48-byte certificates
SUITE_2 = 0x0002  # CBKE, sect283k1, 74-byte certificates
SUITE_BITS = {1: SUITE_1, 2: SUITE_2}

CERTIFICATE_LENGTH = {1: 48, 2: 74}
EPHEMERAL_LENGTH = {1: 22, 2: 37}  # compressed points
MAC_LENGTH = 16

ATTR_KEY_ESTABLISHMENT_SUITE = 0x0000

# command ids (the same numbers in both directions)
INITIATE = 0x00
EPHEMERAL_DATA = 0x01
CONFIRM_KEY_DATA = 0x02
TERMINATE = 0x03

COMMAND_NAMES = {INITIATE: "InitiateKeyEstablishment", EPHEMERAL_DATA: "EphemeralData",
                 CONFIRM_KEY_DATA: "ConfirmKeyData", TERMINATE: "TerminateKeyEstablishment"}


class KeStatus(t.enum8):
    """TerminateKeyEstablishment status (SE 1.4 Table C-10)."""

    UNKNOWN_ISSUER = 0x01
    BAD_KEY_CONFIRM = 0x02
    BAD_MESSAGE = 0x03
    NO_RESOURCES = 0x04
    UNSUPPORTED_SUITE = 0x05
    INVALID_CERTIFICATE = 0x06


class KeSuite(t.enum16):
    """One KeyEstablishmentSuite value; the attribute may hold several bits."""

    SUITE_1 = SUITE_1
    SUITE_2 = SUITE_2


class Mac(bytes):
    """A 16-byte MAC (MACU or MACV)."""

    @classmethod
    def deserialize(cls, data: bytes) -> tuple[Mac, bytes]:
        if len(data) < MAC_LENGTH:
            raise ValueError(f"MAC truncated ({len(data)} of {MAC_LENGTH} bytes)")
        return cls(data[:MAC_LENGTH]), data[MAC_LENGTH:]

    def serialize(self) -> bytes:
        if len(self) != MAC_LENGTH:
            raise ValueError(f"a MAC is {MAC_LENGTH} bytes, not {len(self)}")
        return bytes(self)


_INITIATE = {"key_establishment_suite": KeSuite, "ephemeral_data_generate_time": t.uint8_t,
             "confirm_key_generate_time": t.uint8_t, "identity": t.Bytes}
_TERMINATE = {"status_code": KeStatus, "wait_time": t.uint8_t, "key_establishment_suite": KeSuite}


class KeyEstablishment(Cluster):
    _skip_registry = True
    cluster_id: Final = CLUSTER_ID
    ep_attribute: Final = "smartenergy_key_establishment"

    class AttributeDefs(BaseAttributeDefs):
        key_establishment_suite: Final = ZCLAttributeDef(
            id=ATTR_KEY_ESTABLISHMENT_SUITE, type=t.enum16, access="r", mandatory=True)

    class ServerCommandDefs(BaseCommandDefs):
        initiate_key_establishment: Final = ZCLCommandDef(id=INITIATE, schema=dict(_INITIATE))
        ephemeral_data: Final = ZCLCommandDef(id=EPHEMERAL_DATA,
                                              schema={"ephemeral_data": t.Bytes})
        confirm_key_data: Final = ZCLCommandDef(
            id=CONFIRM_KEY_DATA, schema={"secure_message_authentication_code": Mac})
        terminate_key_establishment: Final = ZCLCommandDef(id=TERMINATE, schema=dict(_TERMINATE))

    class ClientCommandDefs(BaseCommandDefs):
        initiate_key_establishment_response: Final = ZCLCommandDef(
            id=INITIATE, schema=dict(_INITIATE))
        ephemeral_data_response: Final = ZCLCommandDef(
            id=EPHEMERAL_DATA, schema={"ephemeral_data": t.Bytes})
        confirm_key_data_response: Final = ZCLCommandDef(
            id=CONFIRM_KEY_DATA, schema={"secure_message_authentication_code": Mac})
        terminate_key_establishment: Final = ZCLCommandDef(id=TERMINATE, schema=dict(_TERMINATE))


def schema(command_id: int, *, to_server: bool) -> type:
    """The payload schema of a command, by id and direction."""
    commands = KeyEstablishment.server_commands if to_server else KeyEstablishment.client_commands
    return commands[command_id].schema


def suites_of(value: int) -> frozenset[int]:
    """Suite numbers in a KeyEstablishmentSuite attribute value."""
    return frozenset(n for n, bit in SUITE_BITS.items() if value & bit)


def suite_value(suites: frozenset[int] | set[int] | list[int]) -> int:
    value = 0
    for n in suites:
        value |= SUITE_BITS[n]
    return value
