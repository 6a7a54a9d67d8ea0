"""Styles and formatting the dashboard's widgets share: the theme's palette, the key
bindings, durations and clocks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual.binding import Binding

from devbox.tui import keys


@dataclass(frozen=True, slots=True)
class Palette:
    """Semantic styles taken from the current theme, so light and dark both read well."""

    error: str = "red"
    success: str = "green"
    warning: str = "yellow"
    accent: str = "blue"
    diff_bg: str = "on #441E27"
    noise_bg: str = "on #593E19"

    @classmethod
    def from_variables(cls, v: dict[str, str]) -> Palette:
        def pick(name: str, default: str) -> str:
            value = v.get(name, "")
            return value if value.startswith("#") else default

        return cls(
            error=pick("text-error", "red"),
            success=pick("text-success", "green"),
            warning=pick("text-warning", "yellow"),
            accent=pick("text-primary", "blue"),
            diff_bg="on " + pick("error-muted", "#441E27"),
            noise_bg="on " + pick("warning-muted", "#593E19"),
        )

    def verdict(self, verdict: str) -> str:
        return {"pass": self.success, "fail": self.error, "error": self.error}.get(verdict, "")

    def state(self, state: str) -> str:
        return {
            "ready": self.success,
            "crashed": f"bold {self.error}",
            "building": self.warning,
            "starting": self.warning,
        }.get(state, "dim")


BindingList = list[Binding | tuple[str, str] | tuple[str, str, str]]


def key_bindings(ks: tuple[keys.Key, ...]) -> BindingList:
    return [Binding(k, a, lbl, show=s) for k, a, lbl, s in keys.bindings(ks)]


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.0f}" if ms >= 10 else f"{ms:.1f}"


def fmt_duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))
