"""The one exception of every Binance format parser: ``ParseError`` with a short reason code."""

from __future__ import annotations

__all__ = ["ParseError"]


class ParseError(ValueError):
    """Input that is not what its format says: a frame, a REST row, a file or one of its lines.

    ``reason`` is a short, stable code for counters (``not_json``, ``bad_price``, ``too_deep``,
    ``line_too_long`` ...); ``detail`` says what was seen, in words. A file error also names
    ``path`` and, when one line is at fault, its 1-based ``line``, and then reads as
    ``path:line: detail``, one line fit to print as it is.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        if path is not None:
            where = f"{path}:{line}" if line is not None else str(path)
            message = f"{where}: {detail or reason}"
        else:
            message = f"{reason}: {detail}" if detail else reason
        super().__init__(message)
        self.reason = reason
        self.detail = detail
        self.path = path
        self.line = line

    def at(self, path: object, line: int | None = None) -> ParseError:
        """The same error, placed in ``path`` (and ``line``) of a file."""
        return ParseError(
            self.reason, self.detail or self.reason, path=str(path), line=line or self.line
        )
