"""The page's URL parameters: read leniently once per session, each unusable value noted.

The sidebar's widgets are bound to the URL (``bind="query-params"``); left alone, Streamlit
drops a value it cannot use without a word (``?method=kalman``, spelled as the CLI and the alert
rules spell it, silently became OLS). So on a session's first run, before the widgets exist,
:func:`normalise` maps each raw value to what the widget accepts — method and price-mode keys
case-insensitively, numbers clamped to the widget's range — and says, in one short note per
parameter, what was used instead of a value it could not use. Pure: no Streamlit here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: How much of a user's value a note repeats (the rest is cut: notes stay one line).
SHOWN_CHARS = 40


@dataclass(frozen=True, slots=True)
class UrlFix:
    """One URL parameter whose value was replaced: ``used`` goes to the widget's state."""

    param: str
    raw: str
    used: Any
    shown: str  # ``used`` as the page shows it
    reason: str

    def note(self) -> str:
        """Plain text (render it as text, never as Markdown: ``raw`` is the user's)."""
        return (
            f"URL parameter {self.param}={shorten(self.raw)!r} {self.reason}; using {self.shown}."
        )


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Choice:
    """A widget with fixed options: ``labels`` maps each option label to its canonical key."""

    labels: Mapping[str, str]
    default: str
    fold: bool = True  # accept any case and punctuation (False where case matters: 1m ≠ 1M)

    def fix(self, param: str, raw: str) -> UrlFix | None:
        if raw in self.labels:
            return None
        wanted = _fold(raw)
        for label, key in self.labels.items():
            if self.fold and wanted in (_fold(label), _fold(key)):
                return UrlFix(param, raw, label, label, "is spelled differently")
        return UrlFix(
            param, raw, self.default, self.default, f"is not one of {', '.join(self.labels)}"
        )


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric widget: finite values in ``[low, high]``; ``options`` if only some are allowed."""

    low: float
    high: float
    default: float
    integer: bool = False
    options: tuple[float, ...] = ()
    as_text: bool = False  # the widget holds the option as a string ("0.5")

    def fix(self, param: str, raw: str) -> UrlFix | None:
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            return self._fixed(param, raw, self.default, "is not a finite number")
        if self.options:
            nearest = min(self.options, key=lambda o: abs(o - value))
            if nearest == value and (self._text(nearest) == raw or not self.as_text):
                return None
            reason = "is written differently" if nearest == value else "is not offered"
            return self._fixed(param, raw, nearest, reason)
        clamped = min(max(value, self.low), self.high)
        if self.integer and clamped != int(clamped):
            return self._fixed(param, raw, round(clamped), "is not a whole number")
        if clamped != value:
            side = "above the maximum" if value > self.high else "below the minimum"
            return self._fixed(param, raw, clamped, f"is {side}")
        return None

    def _text(self, v: float) -> str:
        return f"{v:g}"

    def _fixed(self, param: str, raw: str, value: float, reason: str) -> UrlFix:
        if self.as_text:
            used: Any = self._text(value)
        elif self.integer:
            used = int(value)
        else:
            used = float(value)
        return UrlFix(param, raw, used, self._text(value), reason)


def normalise(raw: Mapping[str, str], specs: Mapping[str, Choice | Number]) -> list[UrlFix]:
    """The fixes for the parameters of ``raw`` that ``specs`` knows (others are left alone)."""
    fixes = []
    for param, spec in specs.items():
        value = raw.get(param)
        if value is None:
            continue
        fix = spec.fix(param, str(value))
        if fix is not None:
            fixes.append(fix)
    return fixes


def _fold(text: str) -> str:
    """Case- and punctuation-insensitive spelling: ``Theil-Sen`` = ``theilsen`` = ``THEIL_SEN``."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())
