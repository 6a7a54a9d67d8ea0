"""The Textual dashboard over an ``EngineDriver``: ``make_app`` and ``run_dashboard``.

Theory of operation
-------------------
The engine calls our subscriber from its own threads; the subscriber only
appends to a deque (never blocks, never touches a widget). A timer on the UI
thread drains a bounded batch (``BATCH`` events, or ~30 ms) into
``DashboardState`` and re-renders only the panels whose part changed, so a
replay streaming thousands of results becomes a few table updates per second
and key presses are handled between batches.

Everything that may block (``start``, ``rebuild``, ``stop``, file edits) runs
on a Textual thread worker; its outcome comes back as a message, never through
``call_from_thread`` (which would block the worker and deadlock a quitting app).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial

from rich.text import Text
from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.css.query import NoMatches
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Footer, Static, TabbedContent, TabPane

from devbox.core.events import Event, IterationFinished, Log, Problem
from devbox.engine.driver import EngineDriver
from devbox.errors import DevboxError, EngineError
from devbox.tui import keys
from devbox.tui.acting import Acting
from devbox.tui.commands import dashboard_commands
from devbox.tui.logs import LogsPanel
from devbox.tui.panels import MocksPanel, Panel, ServicesPanel, TimelinePanel
from devbox.tui.results import ReplayPanel
from devbox.tui.screens import HelpScreen
from devbox.tui.state import DashboardState
from devbox.tui.style import Palette, key_bindings

TICK_S = 0.05
BATCH = 1000
BATCH_BUDGET_S = 0.03
# while an iteration runs, its progress is drawn at most this often
BUSY_RENDER_S = 0.5
# at most this many events are folded at once when a verdict arrives
VERDICT_BATCH = 20_000
# while the UI is suspended (an editor is open) log lines beyond this are dropped
INBOX_LOG_CAP = 100_000

TABS = (
    ("services", "1 Services", ServicesPanel),
    ("mocks", "2 Mocks", MocksPanel),
    ("replay", "3 Replay", ReplayPanel),
    ("timeline", "4 Timeline", TimelinePanel),
    ("logs", "5 Logs", LogsPanel),
)
# which panels a state change re-renders
_PARTS = {
    "services": ("services",),
    "mocks": ("mocks",),
    "results": ("replay",),
    "trend": ("replay",),
    "timeline": ("timeline",),
    "logs": ("logs",),
}


class DevboxApp(Acting):
    """devbox's dashboard. Create it with ``make_app``."""

    CSS_PATH = "app.tcss"
    TITLE = "devbox"
    BINDINGS = key_bindings(keys.GLOBAL)

    class EngineCallDone(Message):
        def __init__(
            self,
            what: str,
            error: DevboxError | None,
            done: str | None,
            after: Callable[[], None] | None,
        ) -> None:
            super().__init__()
            self.what = what
            self.error = error
            self.done = done
            self.after = after

    class StartFinished(Message):
        def __init__(self, error: DevboxError | None) -> None:
            super().__init__()
            self.error = error

    class Stopped(Message):
        pass

    class VerdictArrived(Message):
        pass

    def __init__(
        self,
        driver: EngineDriver,
        *,
        keep: bool = False,
        autostart: bool = True,
        tick_s: float = TICK_S,
        batch: int = BATCH,
    ) -> None:
        super().__init__()
        self.driver = driver
        self.keep_by_default = keep
        self.autostart = autostart
        self.state = DashboardState()
        self.state.watching = driver.watching
        self.palette = Palette()
        self._inbox: deque[Event] = deque()
        self._tick_s = tick_s
        self._batch = batch
        self._ignore_events = False
        self._quitting = False
        self._user_picked_tab = False
        self.dropped_logs = 0
        self.pump_ticks = 0  # batches rendered (tests use it to see batching happen)
        self.kept = False  # the user quit keeping the sandbox
        self._render_all_next = False
        self._last_render = 0.0
        self.stopped = False  # driver.stop() returned (inside the app)
        self.exit_code = 0
        self.now: Callable[[], float] = time.time  # the uptime clock (tests pin it)
        self.state.clock = lambda: self.now()

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with TabbedContent(initial="tab-services", id="tabs"):
            for tab_id, title, panel in TABS:
                with TabPane(title, id=f"tab-{tab_id}"):
                    yield panel(id=f"{tab_id}-panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = f"devbox {self.driver.profile.name}"
        self.palette = Palette.from_variables(self.get_css_variables())
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.driver.subscribe(self._on_event)
        self.set_interval(self._tick_s, self._pump)
        self.set_interval(1.0, self._second)
        self._render_dirty(full=True)
        self._panel("services").focus_main()
        if self.autostart:
            self._start_engine()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        # devbox's messages quote profiles and paths ("added to [replay] ignore"): plain
        # text unless a caller asks for markup
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _base(self) -> Screen[object] | None:
        """The dashboard's own screen, whatever is on top of it (a diff, the help, a
        confirmation); None before it exists and while the app shuts down. The
        ``self.query_one`` of an App searches only the screen on top."""
        stack = self.screen_stack
        return stack[0] if stack else None

    def _panel(self, tab_id: str) -> Panel:
        base = self._base()
        if base is None:
            raise NoMatches(f"no dashboard screen for #{tab_id}-panel")
        return base.query_one(f"#{tab_id}-panel", Panel)

    def _theme_changed(self, theme: Theme) -> None:
        self.palette = Palette.from_variables(self.get_css_variables())
        self._render_dirty(full=True)

    # ------------------------------------------------------------ events in

    def _on_event(self, event: Event) -> None:
        """The engine's subscriber: any thread, never blocks."""
        if self._ignore_events:
            return
        if isinstance(event, Log) and len(self._inbox) > INBOX_LOG_CAP:
            self.dropped_logs += 1
            return
        self._inbox.append(event)
        if isinstance(event, IterationFinished):
            # the verdict is what the developer waits for: draw it now, not at the next
            # tick (up to TICK_S later, behind a batch of results)
            # (post_message is thread-safe)
            self.post_message(self.VerdictArrived())

    @on(VerdictArrived)
    def _verdict_arrived(self) -> None:
        if not self.is_running or not self._inbox:
            return
        # everything up to the verdict, in one render (the results of a replay are
        # cheap to fold; a bound keeps a runaway producer from holding the UI thread)
        inbox, apply = self._inbox, self.state.apply
        for _ in range(min(len(inbox), VERDICT_BATCH)):
            apply(inbox.popleft())
        self.pump_ticks += 1
        # the status line first, on its own frame; the tables (a hundred rows, the log)
        # once it is on the terminal
        self._render_status()
        self.call_after_refresh(self._render_dirty)

    def _pump(self) -> None:
        if not self._inbox:
            return
        cur = self.state.current
        if (
            cur is not None
            and cur.finished is None
            and time.monotonic() - self._last_render < BUSY_RENDER_S
        ):
            # an iteration is running: the engine's replay shares this process (and its
            # GIL) with us, so draw its progress a few times a second, not 20; its
            # verdict is drawn the moment it arrives (VerdictArrived)
            return
        t0 = time.perf_counter()
        n = 0
        inbox = self._inbox
        apply = self.state.apply
        while inbox and n < self._batch:
            apply(inbox.popleft())
            n += 1
            if n % 250 == 0 and time.perf_counter() - t0 > BATCH_BUDGET_S:
                break
        self.pump_ticks += 1
        self._render_dirty()

    def drain(self) -> None:
        """Apply everything queued now (tests; and before a screenshot)."""
        while self._inbox:
            self._pump()

    @property
    def pending_events(self) -> int:
        return len(self._inbox)

    def _render_dirty(self, full: bool = False) -> None:
        self._last_render = time.monotonic()
        st = self.state
        parts: set[str] = set()
        for d in st.dirty:
            parts.update(_PARTS.get(d, ()))
        if full or self._render_all_next:
            parts = {t for t, _, _ in TABS}
            full, self._render_all_next = True, False
        for tab_id in parts:
            try:
                self._panel(tab_id).render_state(st, self.palette, full=full)
            except NoMatches:
                # a panel whose widgets are not composed yet (the first ticks of a busy
                # start): draw everything once they are
                self._render_all_next = True
        for p in st.new_problems:
            self.notify(
                p.message + (f"\nhint: {p.hint}" if p.hint else ""),
                title="problem",
                severity="error",
                timeout=10,
            )
        finished_first = "status" in st.dirty and st.last_finished is not None
        st.take_changes()
        self._render_status()
        if finished_first and not self._user_picked_tab:
            # the first verdict is what the developer waits for: show it
            self.action_show_tab("replay")

    def _render_status(self) -> None:
        st = self.state
        p = self.palette
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" devbox {self.driver.profile.name} ", style="bold reverse")
        for s in st.services.values():
            text.append("  ")
            text.append(s.name + " ", style="bold")
            text.append(s.state, style=p.state(s.state))
            if s.port:
                text.append(f" :{s.port}", style="dim")
        text.append("  ")
        text.append(
            "watching" if st.watching else "watch paused", style="" if st.watching else p.warning
        )
        text.append("  ")
        line = st.verdict_line()
        # the colour is the verdict's (IterationFinished.verdict), never a word in the text
        verdict = st.last_finished.verdict if st.last_finished is not None else ""
        style = (
            p.error
            if verdict in ("FAIL", "ERROR") or st.phase == "start failed"
            else (p.success if verdict == "PASS" else p.warning)
        )
        text.append(line, style=f"bold {style}")
        if st.problems:
            n = len(st.problems)
            text.append(f"  {n} problem{'s' if n > 1 else ''}", style=p.error)
        base = self._base()
        with contextlib.suppress(NoMatches):  # not composed yet, or shutting down
            if base is not None:
                base.query_one("#status", Static).update(text)

    def _second(self) -> None:
        # a timer: it fires whatever screen is on top, and during shutdown
        try:
            services = self._panel("services")
            assert isinstance(services, ServicesPanel)
            services.tick(self.state)
        except NoMatches:
            pass  # not composed yet, or gone; the next second will do

    # ------------------------------------------------------------ engine calls

    def _start_engine(self, start: Callable[[], None] | None = None) -> None:
        run = start or self.driver.start

        def work() -> None:
            try:
                run()
            except DevboxError as exc:
                self.post_message(self.StartFinished(exc))
            except Exception as exc:
                self.post_message(self.StartFinished(EngineError(f"internal error: {exc!r}")))
            else:
                self.post_message(self.StartFinished(None))

        self.run_worker(work, name="engine start", group="start", thread=True, exit_on_error=False)

    @on(StartFinished)
    def _started(self, message: StartFinished) -> None:
        exc = message.error
        if exc is None:
            if self.state.phase == "starting":
                self.state.phase = "running"
            self._render_status()
            return
        self.state.phase = "start failed"
        self.exit_code = exc.exit_code
        self.state.apply(
            Problem(f"start failed: {exc.one_line()}", exc.hint, getattr(exc, "logs", ()))
        )
        self._render_dirty()

    def call_engine(
        self,
        what: str,
        fn: Callable[[], object],
        *,
        done: str | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        """Run a driver method on a worker thread; report its outcome in the app."""

        def work() -> None:
            try:
                fn()
            except DevboxError as exc:
                self.post_message(self.EngineCallDone(what, exc, None, None))
            except Exception as exc:
                err = EngineError(f"{what} failed: {exc!r}", hint="this is a bug in devbox")
                self.post_message(self.EngineCallDone(what, err, None, None))
            else:
                self.post_message(self.EngineCallDone(what, None, done, after))

        self.run_worker(work, name=what, group="engine", thread=True, exit_on_error=False)

    @on(EngineCallDone)
    def _engine_call_done(self, message: EngineCallDone) -> None:
        if message.error is not None:
            exc = message.error
            self.notify(
                exc.one_line() + (f"\nhint: {exc.hint}" if exc.hint else ""),
                title=f"{message.what} failed",
                severity="error",
                timeout=8,
            )
            hint = f" (hint: {exc.hint})" if exc.hint else ""
            self.state.apply(
                Log("devbox", f"{message.what} failed: {exc.one_line()}{hint}", "error")
            )
            self._render_dirty()
            return
        if message.after is not None:
            message.after()
        if message.done:
            self.notify(message.done, title=message.what)
        self._render_dirty()

    # ------------------------------------------------------------ global actions

    def action_replay(self) -> None:
        self.notify("replay requested", timeout=2)
        self.call_engine("replay", self.driver.replay_now)

    def action_rebuild(self) -> None:
        if self._start_again(self.driver.rebuild):
            return
        self.notify("rebuild requested", timeout=2)
        self.call_engine("rebuild", self.driver.rebuild)

    def action_restart(self) -> None:
        if self._start_again(self.driver.restart):
            return
        self.notify("restart requested", timeout=2)
        self.call_engine("restart", self.driver.restart)

    def _start_again(self, how: Callable[[], None]) -> bool:
        """After a failed start, a rebuild is the whole start again (the engine does it):
        the user has fixed the cause (freed the port, fixed the Dockerfile)."""
        if self.state.phase != "start failed":
            return False
        self.notify("starting the sandbox again", timeout=3)
        self.state.restarted()
        self._render_dirty(full=True)
        self._start_engine(how)
        return True

    def action_toggle_watch(self) -> None:
        target = not self.state.watching

        def after() -> None:
            self.state.watching = target

        self.call_engine(
            "watch",
            partial(self.driver.set_watching, target),
            done="watching resumed" if target else "watching paused: edits do nothing",
            after=after,
        )

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_show_tab(self, tab_id: str) -> None:
        self._user_picked_tab = True
        base = self._base()
        if base is None:
            return
        base.query_one(TabbedContent).active = f"tab-{tab_id}"
        if base is not self.screen:
            return  # a screen on top keeps its focus; the tab is shown when it closes
        # a widget in a hidden pane cannot take focus, and the focused one drags its
        # pane back into view: let go now, focus the new pane once it is shown
        self.set_focus(None)
        self.call_after_refresh(self._panel(tab_id).focus_main)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # only the pane still active: a stale activation must not pull focus (and with
        # it the visible tab) back to a pane the user has left
        if not event.pane.id or event.tabbed_content.active != event.pane.id:
            return
        for panel in self.query(f"#{event.pane.id.removeprefix('tab-')}-panel"):
            if isinstance(panel, Panel):
                panel.focus_main()

    def action_quit_app(self, keep: bool) -> None:
        keep = keep or self.keep_by_default
        if self._quitting:
            # asked twice: leave now; run_dashboard still finishes the teardown
            self.exit(self.exit_code, return_code=self.exit_code)
            return
        self._quitting = True
        if keep:
            self.kept = True
            self.exit(self.exit_code, return_code=self.exit_code)
            return
        self.state.phase = "stopping"
        self.notify("tearing the sandbox down (q again to leave at once)", timeout=30)
        self._render_status()

        def work() -> None:
            try:
                self.driver.stop()
            except Exception as exc:  # the app must still leave
                self.post_message(self.EngineCallDone("stop", EngineError(str(exc)), None, None))
            self.post_message(self.Stopped())

        self.run_worker(work, name="engine stop", group="stop", thread=True, exit_on_error=False)

    @on(Stopped)
    def _stopped(self, message: Stopped) -> None:
        self.stopped = True
        self._ignore_events = True
        self.exit(self.exit_code, return_code=self.exit_code)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from dashboard_commands(self)

    def _quit_teardown(self) -> None:
        self.keep_by_default = False
        self.action_quit_app(False)

    async def action_quit(self) -> None:  # ctrl+q, Textual's default quit: same as q
        self.action_quit_app(False)


def make_app(driver: EngineDriver, *, keep: bool = False, autostart: bool = True) -> DevboxApp:
    """The one factory for the CLI and the tests."""
    return DevboxApp(driver, keep=keep, autostart=autostart)


def run_dashboard(driver: EngineDriver, *, keep: bool = False) -> int:
    """Run the dashboard until the user quits; tear the sandbox down unless kept.

    Returns the exit code: 0, or the error's exit code when the sandbox never
    started."""
    app = make_app(driver, keep=keep)
    try:
        result = app.run()
    finally:
        if not app.kept and not app.stopped:
            driver.stop()
    if app.kept and not app.stopped:
        # outside the app: the terminal is ours again, and DevboxError reaches the CLI
        print(driver.detach())
    if app.return_code:
        return app.return_code
    return result if result is not None else app.exit_code


__all__ = ["DevboxApp", "make_app", "run_dashboard"]
