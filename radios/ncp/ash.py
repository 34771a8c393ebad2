"""ASH, the NCP side (Silicon Labs UG101), sans-IO.

ASH carries EZSP frames over a UART: frames end with a Flag byte (0x7E); reserved bytes
inside a frame are escaped (0x7D, then the byte XOR 0x20); every frame ends in a
CRC-CCITT; DATA payloads are XORed with a pseudo-random sequence. DATA frames are
numbered 0..7 and acknowledged (ACK) or rejected (NAK) by the receiver; an unacknowledged
frame is sent again after ``t_rx_ack`` (adaptive, 0.4..3.2 s) with the retransmit flag.

This object is the *device* end. It takes bytes and the current time, and gives back
events (an EZSP frame arrived, the host reset us) and bytes to write; the caller runs the
retransmission timer by calling :meth:`AshDevice.poll` at :meth:`AshDevice.next_deadline`.

The frame classes (control byte layout, CRC, data randomisation) are bellows' own
(``bellows.ash``), so both ends agree on the wire by construction; byte stuffing and the
receive state machine are here because bellows keeps them private to its host protocol.
"""

from __future__ import annotations

import collections
import dataclasses
import logging

import bellows.types as bt
from bellows.ash import (
    AckFrame,
    AshFrame,
    DataFrame,
    ErrorFrame,
    NakFrame,
    ParsingError,
    RStackFrame,
    RstFrame,
    parse_frame,
)

LOGGER = logging.getLogger(__name__)

FLAG = 0x7E
ESCAPE = 0x7D
XON = 0x11
XOFF = 0x13
SUBSTITUTE = 0x18
CANCEL = 0x1A
RESERVED = frozenset({FLAG, ESCAPE, XON, XOFF, SUBSTITUTE, CANCEL})
FLIP = 0x20

ASH_VERSION = 2
T_RX_ACK_INIT = 1.6  # seconds (UG101 table 4)
T_RX_ACK_MIN = 0.4
T_RX_ACK_MAX = 3.2
ACK_TIMEOUTS = 4  # consecutive ACK timeouts before the NCP gives up (ERROR frame)
MAX_FRAME_BYTES = 2 * (1 + 256 + 2)  # a stuffed DATA frame with the largest payload
MAX_WINDOW = 7

ResetCode = bt.NcpResetCode


class FramingError(ValueError):
    """Bytes between two Flags that are not an ASH frame."""


def stuff(data: bytes) -> bytes:
    """Escape every reserved byte (Flag, Escape, XON, XOFF, Substitute, Cancel)."""
    out = bytearray()
    for byte in data:
        if byte in RESERVED:
            out.append(ESCAPE)
            out.append(byte ^ FLIP)
        else:
            out.append(byte)
    return bytes(out)


def unstuff(data: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            value = byte ^ FLIP
            if value not in RESERVED:
                raise FramingError(f"escaped byte 0x{value:02X} is not a reserved byte")
            out.append(value)
            escaped = False
        elif byte == ESCAPE:
            escaped = True
        else:
            out.append(byte)
    if escaped:
        raise FramingError("frame ends in an Escape byte")
    return bytes(out)


def encode(frame: AshFrame) -> bytes:
    """A frame as it goes on the wire: stuffed, then the Flag."""
    return stuff(frame.to_bytes()) + bytes([FLAG])


@dataclasses.dataclass(frozen=True)
class HostReset:
    """The host sent RST: the NCP has rebooted (RSTACK already queued)."""


@dataclasses.dataclass(frozen=True)
class Received:
    """An EZSP frame from the host, in sequence, once."""

    frame: bytes


AshEvent = HostReset | Received


@dataclasses.dataclass
class AshStats:
    frames_in: int = 0
    frames_out: int = 0
    data_in: int = 0
    data_out: int = 0
    duplicates: int = 0
    retransmitted_in: int = 0  # DATA frames from the host with the reTx flag
    retransmissions: int = 0
    timeouts: int = 0
    naks_sent: int = 0
    naks_received: int = 0
    bad_frames: int = 0
    discarded_bytes: int = 0
    resets: int = 0
    errors_sent: int = 0
    flow_control_bytes: int = 0


@dataclasses.dataclass
class _Outgoing:
    frm_num: int
    payload: bytes
    sent_at: float
    retransmitted: bool = False


class AshDevice:
    """The NCP end of one ASH session."""

    def __init__(
        self,
        *,
        window: int = 1,
        t_rx_ack_init: float = T_RX_ACK_INIT,
        t_rx_ack_min: float = T_RX_ACK_MIN,
        t_rx_ack_max: float = T_RX_ACK_MAX,
        ack_timeouts: int = ACK_TIMEOUTS,
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"ASH window must be 1..{MAX_WINDOW}")
        self.window = window
        self.t_rx_ack_init = t_rx_ack_init
        self.t_rx_ack_min = t_rx_ack_min
        self.t_rx_ack_max = t_rx_ack_max
        self.ack_timeouts = ack_timeouts
        self.stats = AshStats()
        self._out = bytearray()
        self._rx = bytearray()
        self._discarding = False
        self._connected = False
        self._failed = False
        self._reset_state()

    def _reset_state(self) -> None:
        self._tx_seq = 0  # frmNum of our next new DATA frame
        self._rx_seq = 0  # frmNum we expect next from the host (our ackNum)
        self._reject = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._unacked: collections.deque[_Outgoing] = collections.deque()
        self._deadline: float | None = None
        self._t_rx_ack = self.t_rx_ack_init
        self._consecutive_timeouts = 0

    # -- state ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected and not self._failed

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def t_rx_ack(self) -> float:
        return self._t_rx_ack

    @property
    def pending(self) -> int:
        """DATA frames queued or sent and not yet acknowledged."""
        return len(self._queue) + len(self._unacked)

    def output(self) -> bytes:
        """The bytes to write to the host now (drains)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float | None:
        return self._deadline

    # -- reset ----------------------------------------------------------------------
    def power_on(self, code: ResetCode = ResetCode.RESET_POWER_ON) -> None:
        """The NCP (re)starts: forget the session and announce it with RSTACK."""
        self._reset_state()
        self._rx.clear()
        self._discarding = False
        self._connected = True
        self._failed = False
        self.stats.resets += 1
        self._write(RStackFrame(version=ASH_VERSION, reset_code=code))

    def fail(self, code: ResetCode) -> None:
        """Enter the FAILED state: send ERROR and ignore everything but RST."""
        self._write(ErrorFrame(version=ASH_VERSION, reset_code=code))
        self.stats.errors_sent += 1
        self._failed = True
        self._queue.clear()
        self._unacked.clear()
        self._deadline = None

    # -- sending --------------------------------------------------------------------
    def send(self, ezsp_frame: bytes, now: float) -> None:
        """Queue one EZSP frame for the host (a response or a callback)."""
        if self._failed or not self._connected:
            LOGGER.debug("ASH not connected, dropping EZSP frame %s", ezsp_frame.hex())
            return
        self._queue.append(bytes(ezsp_frame))
        self._fill_window(now)

    def _write(self, frame: AshFrame) -> None:
        self._out += encode(frame)
        self.stats.frames_out += 1

    def _write_data(self, item: _Outgoing, *, re_tx: bool) -> None:
        self._write(
            DataFrame(frm_num=item.frm_num, re_tx=re_tx, ack_num=self._rx_seq,
                      ezsp_frame=item.payload)
        )
        self.stats.data_out += 1

    def _fill_window(self, now: float) -> None:
        while self._queue and len(self._unacked) < self.window:
            item = _Outgoing(self._tx_seq, self._queue.popleft(), now)
            self._tx_seq = (self._tx_seq + 1) % 8
            self._unacked.append(item)
            self._write_data(item, re_tx=False)
            if self._deadline is None:
                self._deadline = now + self._t_rx_ack

    def _retransmit(self, now: float, start: int | None = None) -> None:
        """Send the unacknowledged frames again, from frmNum ``start`` (default: all)."""
        resend = False
        for item in self._unacked:
            if start is not None and item.frm_num == start:
                resend = True
            if start is None or resend:
                item.retransmitted = True
                item.sent_at = now
                self._write_data(item, re_tx=True)
                self.stats.retransmissions += 1
        if self._unacked:
            self._deadline = now + self._t_rx_ack

    def poll(self, now: float) -> None:
        """Run the retransmission timer."""
        if self._deadline is None or now < self._deadline or not self._unacked:
            return
        self.stats.timeouts += 1
        self._consecutive_timeouts += 1
        if self._consecutive_timeouts > self.ack_timeouts:
            LOGGER.warning("ASH: %d ACK timeouts in a row, entering FAILED state",
                           self._consecutive_timeouts)
            self.fail(ResetCode.ERROR_EXCEEDED_MAXIMUM_ACK_TIMEOUT_COUNT)
            return
        self._t_rx_ack = min(2 * self._t_rx_ack, self.t_rx_ack_max)
        LOGGER.debug("ASH: no ACK for frame %d, retransmitting (t_rx_ack %.2f s)",
                     self._unacked[0].frm_num, self._t_rx_ack)
        self._retransmit(now)

    def _acknowledged(self, ack_num: int, now: float) -> None:
        """The host expects ``ack_num`` next: every earlier frame of ours arrived."""
        if not self._unacked:
            return
        first = self._unacked[0].frm_num
        count = (ack_num - first) % 8
        if count > len(self._unacked):
            return  # an ackNum outside the window: stale, ignore
        for _ in range(count):
            item = self._unacked.popleft()
            if not item.retransmitted:  # Karn: only unambiguous samples adapt the timer
                measured = now - item.sent_at
                self._t_rx_ack = min(
                    max(7 / 8 * self._t_rx_ack + measured / 2, self.t_rx_ack_min),
                    self.t_rx_ack_max,
                )
        if count:
            self._consecutive_timeouts = 0
            self._deadline = now + self._t_rx_ack if self._unacked else None
            self._fill_window(now)

    # -- receiving ------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[AshEvent]:
        """Bytes from the host. Returns what happened, in order."""
        events: list[AshEvent] = []
        rx = self._rx
        for byte in data:
            if byte == XON or byte == XOFF:
                self.stats.flow_control_bytes += 1  # software flow control, not data
            elif byte == FLAG:
                if self._discarding:
                    self._discarding = False
                elif rx:
                    events.extend(self._on_frame_bytes(bytes(rx), now))
                rx.clear()
            elif byte == CANCEL:
                self.stats.discarded_bytes += len(rx)
                rx.clear()
                self._discarding = False
            elif byte == SUBSTITUTE:
                self.stats.discarded_bytes += len(rx)
                rx.clear()
                self._discarding = True
            elif self._discarding:
                self.stats.discarded_bytes += 1
            elif len(rx) >= MAX_FRAME_BYTES:
                self.stats.bad_frames += 1
                self.stats.discarded_bytes += len(rx)
                rx.clear()
                self._discarding = True
            else:
                rx.append(byte)
        return events

    def _on_frame_bytes(self, stuffed: bytes, now: float) -> list[AshEvent]:
        try:
            raw = unstuff(stuffed)
            frame = parse_frame(raw)
        except (FramingError, ParsingError, ValueError) as exc:  # not an ASH frame
            self.stats.bad_frames += 1
            LOGGER.debug("ASH: bad frame %s: %s", stuffed.hex(), exc)
            head = stuffed[0] if stuffed else 0xFF
            if head & DataFrame.MASK == DataFrame.MASK_VALUE:
                self._nak()  # a damaged DATA frame is rejected (UG101 3.4)
            return []
        self.stats.frames_in += 1
        return self._on_frame(frame, now)

    def _on_frame(self, frame: AshFrame, now: float) -> list[AshEvent]:
        if isinstance(frame, RstFrame):
            LOGGER.debug("ASH: RST from host")
            self.power_on(ResetCode.RESET_SOFTWARE)
            return [HostReset()]
        if not self.connected:
            return []  # FAILED: only RST brings the NCP back
        if isinstance(frame, DataFrame):
            self._acknowledged(frame.ack_num, now)
            return self._on_data(frame)
        if isinstance(frame, AckFrame):
            self._acknowledged(frame.ack_num, now)
        elif isinstance(frame, NakFrame):
            self.stats.naks_received += 1
            self._acknowledged(frame.ack_num, now)
            if any(item.frm_num == frame.ack_num for item in self._unacked):
                self._retransmit(now, start=frame.ack_num)
        else:  # RSTACK / ERROR are NCP-to-host frames
            self.stats.bad_frames += 1
        return []

    def _on_data(self, frame: DataFrame) -> list[AshEvent]:
        if frame.re_tx:
            self.stats.retransmitted_in += 1
        if frame.frm_num == self._rx_seq:
            self._rx_seq = (self._rx_seq + 1) % 8
            self._reject = False
            self.stats.data_in += 1
            self._write(AckFrame(res=0, ncp_ready=0, ack_num=self._rx_seq))
            return [Received(frame.ezsp_frame)]
        if frame.re_tx:
            # a retransmission of a frame we have: our ACK was lost, send it again
            self.stats.duplicates += 1
            self._write(AckFrame(res=0, ncp_ready=0, ack_num=self._rx_seq))
        else:
            self._nak()
        return []

    def _nak(self) -> None:
        if not self.connected or self._reject:
            return  # one NAK per reject condition
        self._reject = True
        self.stats.naks_sent += 1
        self._write(NakFrame(res=0, ncp_ready=0, ack_num=self._rx_seq))
