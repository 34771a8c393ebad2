"""EZSP command handlers: security — the security state, the keys and the key table.

``setInitialSecurityState`` (the keys and trust centre a network is formed with, into
:class:`radios.ncp.state.NcpState`), the current security state, exporting the network,
trust-centre and application link keys, the network key's info, the link-key table
(import, export, find, erase, clear) and the transient keys joiners use. A mixin of
:class:`radios.ncp.ezsp.EzspNcp`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bellows.types as bt

from radios.ncp.cmd_common import S

if TYPE_CHECKING:
    from radios.ncp.ezsp import Radio
    from radios.ncp.state import NcpState

LOGGER = logging.getLogger("radios.ncp.ezsp")  # the EZSP layer's logger, as before the split


class SecurityCommands:
    """``cmd_*`` handlers for the security state, keys and transient keys."""

    if TYPE_CHECKING:  # what these handlers use from the EzspNcp core
        state: NcpState
        radio: Radio
        on_persist: Callable[[], None]
        network_up: bool
        config: dict[int, int]
        transient_keys: dict[str, bytes]

        def _policy_changed(self) -> None: ...

    def cmd_setInitialSecurityState(self, state: bt.EmberInitialSecurityState) -> dict:
        if self.network_up:
            return {"status": S.INVALID_STATE}
        st = self.state
        bits = bt.EmberInitialSecurityBitmask
        st.security_bitmask = int(state.bitmask)
        if bits.HAVE_PRECONFIGURED_KEY in state.bitmask:
            st.tc_link_key = bytes(state.preconfiguredKey).hex()
        if bits.HAVE_NETWORK_KEY in state.bitmask:
            st.network_key = bytes(state.networkKey).hex()
            st.network_key_seq = int(state.networkKeySequenceNumber)
        if bits.HAVE_TRUST_CENTER_EUI64 in state.bitmask:
            st.tc_eui64 = str(state.preconfiguredTrustCenterEui64)
        else:
            st.tc_eui64 = str(st.ieee)
        self.on_persist()
        return {"status": S.OK}

    def _current_security_bitmask(self) -> bt.EmberCurrentSecurityBitmask:
        cur = bt.EmberCurrentSecurityBitmask
        init = bt.EmberInitialSecurityBitmask(self.state.security_bitmask)
        bitmask = cur.STANDARD_SECURITY_MODE
        if bt.EmberInitialSecurityBitmask.TRUST_CENTER_GLOBAL_LINK_KEY in init:
            bitmask |= cur.GLOBAL_LINK_KEY
        if bt.EmberInitialSecurityBitmask.TRUST_CENTER_USES_HASHED_LINK_KEY in init:
            bitmask |= cur.TRUST_CENTER_USES_HASHED_LINK_KEY
        bitmask |= cur.HAVE_TRUST_CENTER_LINK_KEY
        return cur(bitmask)

    def cmd_getCurrentSecurityState(self) -> dict:
        if not self.network_up:
            return {"status": S.NOT_JOINED, "state": bt.EmberCurrentSecurityState(
                bitmask=0, trustCenterLongAddress=bt.EUI64.convert(self.state.tc_eui64))}
        return {"status": S.OK, "state": bt.EmberCurrentSecurityState(
            bitmask=self._current_security_bitmask(),
            trustCenterLongAddress=bt.EUI64.convert(self.state.tc_eui64))}

    def cmd_exportKey(self, context: bt.SecurityManagerContextV13) -> dict:
        kind = bt.SecurityManagerKeyType
        if context.core_key_type == kind.NETWORK:
            return {"key": bt.KeyData.convert(self.state.network_key), "status": S.OK}
        if context.core_key_type == kind.TC_LINK:
            return {"key": bt.KeyData.convert(self.state.tc_link_key), "status": S.OK}
        if context.core_key_type == kind.APP_LINK:
            for k in self.state.link_keys:
                if k.ieee == str(context.eui64):
                    return {"key": bt.KeyData.convert(k.key), "status": S.OK}
        return {"key": bt.KeyData(b"\x00" * 16), "status": S.NOT_FOUND}

    def cmd_getNetworkKeyInfo(self) -> dict:
        st = self.state
        return {"status": S.OK, "network_key_info": bt.SecurityManagerNetworkKeyInfo(
            network_key_set=st.formed, alternate_network_key_set=False,
            network_key_sequence_number=st.network_key_seq, alt_network_key_sequence_number=0,
            network_key_frame_counter=st.nwk_frame_counter)}

    def cmd_clearKeyTable(self) -> dict:
        self.state.link_keys.clear()
        self.on_persist()
        self._link_keys_changed()
        return {"status": S.OK}

    def cmd_importLinkKey(self, index: int, address: bt.EUI64, key: bt.KeyData) -> dict:
        from radios.ncp.state import LinkKey

        size = self.config.get(int(bt.EzspConfigId.CONFIG_KEY_TABLE_SIZE), 4)
        if index >= size:
            return {"status": S.INVALID_INDEX}
        keys = [k for k in self.state.link_keys if k.ieee != str(address)]
        keys.insert(min(index, len(keys)), LinkKey(ieee=str(address), key=bytes(key).hex()))
        self.state.link_keys = keys
        self.on_persist()
        self._link_keys_changed()
        return {"status": S.OK}

    def _link_keys_changed(self) -> None:
        """The key table changed: the stack below uses it for APS security from now on."""
        hook = getattr(self.radio, "link_keys_changed", None)
        if hook is not None:
            hook()

    def cmd_exportLinkKeyByIndex(self, index: int) -> dict:
        meta = bt.SecurityManagerAPSKeyMetadata(bitmask=0, outgoing_frame_counter=0,
                                                incoming_frame_counter=0, ttl_in_seconds=0)
        if index < len(self.state.link_keys):
            k = self.state.link_keys[index]
            return {"eui64": bt.EUI64.convert(k.ieee), "plaintext_key": bt.KeyData.convert(k.key),
                    "key_data": meta, "status": S.OK}
        return {"eui64": bt.EUI64.convert("00:00:00:00:00:00:00:00"),
                "plaintext_key": bt.KeyData(b"\x00" * 16), "key_data": meta,
                "status": S.NOT_FOUND}

    def cmd_findKeyTableEntry(self, address: bt.EUI64, linkKey: bool) -> dict:
        for i, k in enumerate(self.state.link_keys):
            if k.ieee == str(address):
                return {"index": i}
        return {"index": 0xFF}

    def cmd_eraseKeyTableEntry(self, index: int) -> dict:
        if index < len(self.state.link_keys):
            del self.state.link_keys[index]
            self.on_persist()
            self._link_keys_changed()
            return {"status": S.OK}
        return {"status": S.INVALID_INDEX}

    def cmd_importTransientKey(self, eui64: bt.EUI64, plaintext_key: bt.KeyData,
                               flags: Any) -> dict:
        self.transient_keys[str(eui64)] = bytes(plaintext_key)
        LOGGER.info("NCP: transient link key for %s", eui64)
        self._policy_changed()
        return {"status": S.OK}

    def cmd_clearTransientLinkKeys(self) -> dict:
        self.transient_keys.clear()
        self._policy_changed()
        return {}
