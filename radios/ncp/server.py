"""The NCP emulator's asyncio shell: a TCP listener and/or a pty, timers, persistence.

One host at a time, as on a serial line: a second TCP client is refused while one is
connected. A TCP connection is a power-up: the NCP's RAM is fresh and it announces itself
with RSTACK (as zigbeed does; bellows then skips its own reset, else it waits 2 s). A pty
is always "plugged in"; the host starts the session with RST. Whatever arrives, the
emulator logs it and carries on.

    emu = await start_emulator(air, state_path=Path("ncp.json"))
    # bellows: {"device": {"path": emu.url}}
    ...
    await emu.restart()   # power cycle: RAM lost, NV state kept, host reconnects
    await emu.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from pathlib import Path
from typing import Any

import bellows.types as bt

from radios.air import VirtualAir
from radios.ncp.ash import AshDevice, HostReset, Received
from radios.ncp.cmd_cbke import CbkeData, CbkeEngine
from radios.ncp.ezsp import PROTOCOL_VERSION, EzspNcp
from radios.ncp.node import NcpNode
from radios.ncp.state import NcpState
from radios.tasks import cancel_and_wait

LOGGER = logging.getLogger(__name__)

COUNTER_SAVE_PERIOD = 10.0  # seconds between writes of the frame counters
# bellows listens for the NCP's own RSTACK only once its connection is set up; an RSTACK
# before that is "an unexpected reset" (a failure). Boot takes about this long.
BOOT_DELAY = 0.25


class _Session:
    """Where the ASH bytes go: a TCP transport or the pty master."""

    def __init__(self, write: Any, close: Any, name: str) -> None:
        self.write = write
        self.close = close
        self.name = name


class NcpEmulator:
    """One emulated EZSP NCP: ASH + EZSP + the coordinator node on ``air``."""

    def __init__(self, air: VirtualAir, *, host: str = "127.0.0.1", port: int = 0,
                 state_path: Path | None = None, ieee: str | None = None, pty: bool = False,
                 tcp: bool = True, version: int = PROTOCOL_VERSION,
                 ash_options: dict[str, Any] | None = None, boot_delay: float = BOOT_DELAY,
                 cbke_engine: CbkeEngine | None = None,
                 cbke_data: dict[int, CbkeData] | None = None) -> None:
        """``cbke_engine``: the EC library of the CBKE commands (None: a stick without it);
        ``cbke_data``: suite -> CBKE data written to the stick's token at start, as the
        factory programs it (replacing what the state file holds for that suite)."""
        self.air = air
        self.boot_delay = boot_delay
        self.host = host
        self.port = port
        self.state_path = state_path
        self.want_pty = pty
        self.want_tcp = tcp
        self.version = version
        self.ash_options = dict(ash_options or {})
        self.state = NcpState.load(state_path, ieee=ieee)
        self.state.save(state_path)
        self.cbke_engine = cbke_engine
        self._make_ncp()
        for suite, data in (cbke_data or {}).items():
            self.ncp.cbke_provision(suite, data)
        self._server: asyncio.AbstractServer | None = None
        self._session: _Session | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._saver: asyncio.Task[None] | None = None
        self._pty_master: int | None = None
        self._pty_session: _Session | None = None
        self._pty_slave: int | None = None
        self.pty_path: str | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.connections = 0
        self.bytes_in = 0  # on the line, both ways (ASH frames, stuffed, with Flags)
        self.bytes_out = 0
        self.refused = 0
        self.errors = 0

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def start(self) -> NcpEmulator:
        if self.want_tcp:
            self._server = await asyncio.start_server(self._on_client, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            LOGGER.info("NCP emulator %s listening on %s (EZSP v%d)", self.state.ieee,
                        self.url, self.version)
        if self.want_pty:
            self._open_pty()
        self._saver = asyncio.create_task(self._save_counters(), name="ncp-save-counters")
        return self

    async def stop(self) -> None:
        if self._saver is not None:
            await cancel_and_wait([self._saver], 10)
            self._saver = None
        if self._server is not None:
            self._server.close()
            self._drop_session("emulator stopped")
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self._drop_session("emulator stopped")
        if self._handlers:  # connection handlers end once their line is closed
            _done, pending = await asyncio.wait(set(self._handlers), timeout=1.0)
            for task in pending:
                task.cancel()
        self._close_pty()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.node.close()
        self.state.save(self.state_path)

    async def restart(self, *, down_for: float = 0.0) -> None:
        """A power cycle: the host loses the line, RAM is lost, the NV state is kept."""
        LOGGER.info("NCP emulator restarting")
        await self.stop()
        await asyncio.sleep(down_for)
        if self.state_path is not None:
            self.state = NcpState.load(self.state_path)
        else:
            self.state.boot()
        self._make_ncp()
        await self.start()

    def _make_ncp(self) -> None:
        """The stack on a fresh boot: node, EZSP layer (with its CBKE library), ASH."""
        self.node = NcpNode(self.air, self.state, on_output=self._flush)
        self.ncp = EzspNcp(self.state, self.node, version=self.version,
                           on_persist=self._persist)
        self.ncp.cbke_attach(self.cbke_engine, runner=self._run_ecc, output=self._flush)
        self.node.bind(self.ncp)
        self.ash = AshDevice(**self.ash_options)

    def _run_ecc(self, job: Any, done: Any) -> None:
        """The CBKE maths in a worker thread: the loop keeps serving the host meanwhile."""
        future = self.loop.run_in_executor(None, job)

        def finished(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            error = fut.exception()
            try:
                done(None if error is not None else fut.result(), error)
            except Exception:  # noqa: BLE001 - the emulator must outlive its own bugs
                self.errors += 1
                LOGGER.exception("NCP: delivering an ECC result failed")

        future.add_done_callback(finished)

    async def __aenter__(self) -> NcpEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- persistence ---------------------------------------------------------------------
    def _persist(self) -> None:
        self.state.save(self.state_path)

    async def _save_counters(self) -> None:
        saved = self.state.nwk_frame_counter
        while True:
            await asyncio.sleep(COUNTER_SAVE_PERIOD)
            if self.state.nwk_frame_counter != saved:
                saved = self.state.nwk_frame_counter
                self._persist()

    # -- sessions ------------------------------------------------------------------------
    def _power_on(self, session: _Session, *, announce: bool) -> None:
        """A new host session: fresh RAM, network down until networkInit."""
        self.node.network_down()
        self.ncp.reset()
        self.ncp.take()
        self._session = session
        if announce:
            self.ash.power_on(bt.NcpResetCode.RESET_POWER_ON)
        else:
            self.ash = AshDevice(**self.ash_options)
        self._write_out()

    def _announce(self, session: _Session) -> None:
        """The NCP has booted: RSTACK, unless the host has reset it already."""
        if self._session is session and not self.ash.connected:
            self.ash.power_on(bt.NcpResetCode.RESET_POWER_ON)
            self._write_out()

    def _drop_session(self, why: str) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        LOGGER.info("NCP: host on %s gone (%s)", session.name, why)
        with contextlib.suppress(Exception):
            session.close()
        self.node.network_down()
        self.ncp.network_up = False

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        peer = writer.get_extra_info("peername")
        name = f"tcp {peer[0]}:{peer[1]}" if peer else "tcp"
        if self._session is not None:
            self.refused += 1
            LOGGER.warning("NCP: refusing %s, %s is connected (one host at a time)", name,
                           self._session.name)
            writer.close()
            return
        self.connections += 1
        LOGGER.info("NCP: host connected on %s", name)
        session = _Session(writer.write, writer.close, name)
        self._power_on(session, announce=False)
        boot = self.loop.call_later(self.boot_delay, self._announce, session)
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                if self._session is not session:
                    break
                self._on_bytes(data)
        except (ConnectionError, OSError) as exc:
            LOGGER.info("NCP: %s: %s", name, exc)
        finally:
            boot.cancel()
            if self._session is session:
                self._drop_session("disconnected")
            with contextlib.suppress(Exception):
                writer.close()

    # -- the byte pump --------------------------------------------------------------------
    def _on_bytes(self, data: bytes) -> None:
        self.bytes_in += len(data)
        try:
            for event in self.ash.receive(data, self.loop.time()):
                if isinstance(event, HostReset):
                    LOGGER.info("NCP: RST from the host, NCP reset")
                    self.node.network_down()
                    self.ncp.reset()
                    self.ncp.take()
                    self._flush_pty_input()
                elif isinstance(event, Received):
                    self.ncp.handle(event.frame)
                    self._flush()
        except Exception:  # noqa: BLE001 - the emulator must outlive any input
            self.errors += 1
            LOGGER.exception("NCP: error handling host bytes %s", data[:64].hex())
        self._write_out()

    def _flush(self) -> None:
        """Move the EZSP layer's frames into ASH and ASH's bytes onto the line."""
        now = self.loop.time()
        for frame in self.ncp.take():
            self.ash.send(frame, now)
        self._write_out()

    def _write_out(self) -> None:
        data = self.ash.output()
        if data and self._session is not None:
            self.bytes_out += len(data)
            try:
                self._session.write(data)
            except (OSError, RuntimeError) as exc:
                LOGGER.info("NCP: write failed: %s", exc)
                self._drop_session(str(exc))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.ash.next_deadline()
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.ash.poll(self.loop.time())
        except Exception:  # noqa: BLE001
            self.errors += 1
            LOGGER.exception("NCP: ASH timer failed")
        self._write_out()

    # -- pty -------------------------------------------------------------------------------
    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty_master, self._pty_slave = master, slave
        self.pty_path = os.ttyname(slave)
        self._pty_session = _Session(self._pty_write, lambda: None, f"pty {self.pty_path}")
        self.loop.add_reader(master, self._on_pty_readable)
        LOGGER.info("NCP emulator %s on pty %s", self.state.ieee, self.pty_path)

    def _pty_write(self, data: bytes) -> None:
        if self._pty_master is None:
            return
        try:
            os.write(self._pty_master, data)
        except BlockingIOError:
            LOGGER.debug("NCP: pty full, %d bytes dropped (the line is lossy now)", len(data))

    def _on_pty_readable(self) -> None:
        if self._pty_master is None:
            return
        try:
            data = os.read(self._pty_master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            LOGGER.debug("NCP: pty read: %s", exc)
            return
        assert self._pty_session is not None
        if self._session is None:  # the host opened the pty (it will reset us with RST)
            LOGGER.info("NCP: host on %s", self._pty_session.name)
            self.connections += 1
            self._power_on(self._pty_session, announce=False)
        elif self._session is not self._pty_session:
            self.refused += 1
            LOGGER.debug("NCP: %d bytes on the pty ignored, %s has the line", len(data),
                         self._session.name)
            return
        self._on_bytes(data)

    def _flush_pty_input(self) -> None:
        if self._pty_slave is not None:
            with contextlib.suppress(OSError):
                termios.tcflush(self._pty_slave, termios.TCIFLUSH)

    def _close_pty(self) -> None:
        if self._pty_master is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self._pty_master)
            for fd in (self._pty_master, self._pty_slave):
                with contextlib.suppress(OSError):
                    os.close(fd)  # type: ignore[arg-type]
            self._pty_master = self._pty_slave = None


async def start_emulator(air: VirtualAir, *, host: str = "127.0.0.1", port: int = 0,
                         state_path: Path | None = None, ieee: str | None = None,
                         pty: bool = False, tcp: bool = True,
                         version: int = PROTOCOL_VERSION,
                         ash_options: dict[str, Any] | None = None,
                         cbke_engine: CbkeEngine | None = None,
                         cbke_data: dict[int, CbkeData] | None = None) -> NcpEmulator:
    """Start an emulated EZSP NCP attached to ``air``; bellows reaches it at ``.url``."""
    emu = NcpEmulator(air, host=host, port=port, state_path=state_path, ieee=ieee, pty=pty,
                      tcp=tcp, version=version, ash_options=ash_options,
                      cbke_engine=cbke_engine, cbke_data=cbke_data)
    return await emu.start()
