"""The alerts file (TOML): watchlist pairs, rules and sinks for a headless collector.

``python -m ingestion --db ... --alerts FILE.toml`` reads it with :mod:`tomllib`, validates all of
it before anything starts (unknown keys, bad metrics, malformed URLs, missing secret
variables: :class:`AlertFileError`, one line naming the problem) and then *applies* it to the
database (:func:`apply_config`): pairs are added to the watchlist, rules and sinks are added
unless an identical one exists. The database stays the one source of truth that the monitor,
the delivery worker and the page read; the file is a declarative way to fill it (see
docs/alerts.md). Secrets never appear in the file: sinks name variables, looked up in the
environment, then in the secrets file (``[secrets] file = "~/.config/desk/secrets.env"``, a
path relative to the alerts file, or ``$SECRETS_FILE``; see ``service.secretfile``).

Example::

    [[pairs]]
    x = "BTCUSDT"
    y = "ETHUSDT"
    tf = "1s"
    window = 60
    method = "ols"

    [[rules]]
    pair = "BTCUSDT/ETHUSDT"
    tf = "1s"
    window = 60
    method = "ols"
    metric = "abs_zscore"
    op = ">"
    threshold = 2.0
    cooldown_s = 0

    [[sinks]]
    kind = "webhook"
    url = "http://127.0.0.1:9999/hook"
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.alerts import validate_rule
from service.delivery import Sink, SinkConfigError
from service.secretfile import SecretsError, load_secret_environ, secret_environ
from service.watch import PairKey
from storage.outbox import SINK_KINDS

_PAIR_KEYS = {"x": str, "y": str, "tf": str, "window": int, "method": str}
_RULE_KEYS = {
    "pair": str,
    "tf": str,
    "window": int,
    "method": str,
    "metric": str,
    "op": str,
    "threshold": float,
    "cooldown_s": float,
    "name": str,
}
_SINK_KEYS = {
    "kind": str,
    "name": str,
    "url": str,
    "url_env": str,
    "token_env": str,
    "chat_id": str,
    "api_base": str,
}
_TOP_KEYS = ("pairs", "rules", "sinks")
_SECRETS_KEYS = {"file": str}


class AlertFileError(ValueError):
    """The alerts file cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule of the file, before it is stored."""

    key: PairKey
    metric: str
    op: str
    threshold: float
    cooldown_s: float
    name: str = ""


@dataclass(frozen=True, slots=True)
class AlertConfig:
    pairs: tuple[PairKey, ...]
    rules: tuple[RuleSpec, ...]
    sinks: tuple[Sink, ...]
    #: The secrets file of ``[secrets] file`` (absolute), or "" (then ``$SECRETS_FILE``).
    secrets_file: str = ""

    def environ(self, environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
        """Where the sinks' variables are looked up: the environment, then the secrets file."""
        return secret_environ(environ, self.secrets_file or None)

    @property
    def symbols(self) -> list[str]:
        """Every symbol a pair needs, in file order."""
        out: list[str] = []
        for p in self.pairs:
            out += [s for s in (p.x, p.y) if s not in out]
        return out


def _check_keys(where: str, table: Any, allowed: Mapping[str, type]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise AlertFileError(f"{where} must be a table")
    out = {}
    for k, v in table.items():
        if k not in allowed:
            near = difflib.get_close_matches(k, list(allowed), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise AlertFileError(f"{where}: unknown key {k!r}{hint}")
        want = allowed[k]
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if want is str and isinstance(v, int) and not isinstance(v, bool) and k == "chat_id":
            v = str(v)
        if not isinstance(v, want) or isinstance(v, bool):
            raise AlertFileError(f"{where}: {k} must be a {want.__name__} (got {v!r})")
        out[k] = v
    return out


def _pair(where: str, t: dict[str, Any]) -> PairKey:
    for k in ("x", "y"):
        if k not in t:
            raise AlertFileError(f"{where}: missing {k}")
    try:
        key = PairKey(
            t["x"].upper(),
            t["y"].upper(),
            t.get("tf", "1s"),
            int(t.get("window", 60)),
            t.get("method", "ols"),
        )
    except ValueError as exc:
        raise AlertFileError(f"{where}: {exc}") from None
    if key.x == key.y or not 2 <= key.window <= 1000:
        raise AlertFileError(f"{where}: needs two different symbols and a window of 2..1000")
    return key


def _rule(where: str, t: dict[str, Any], pairs: tuple[PairKey, ...]) -> RuleSpec:
    for k in ("pair", "metric", "op", "threshold"):
        if k not in t:
            raise AlertFileError(f"{where}: missing {k}")
    legs = t["pair"].upper().split("/")
    if len(legs) != 2 or not all(legs):
        raise AlertFileError(f"{where}: pair must be written X/Y (got {t['pair']!r})")
    same = [p for p in pairs if (p.x, p.y) == tuple(legs)]
    for k, attr in (("tf", "tf"), ("window", "window"), ("method", "method")):
        if k in t:
            same = [p for p in same if getattr(p, attr) == t[k]]
    if len(same) != 1:
        what = (
            "is not in [[pairs]]"
            if not same
            else "matches several [[pairs]]: give tf/window/method"
        )
        raise AlertFileError(f"{where}: pair {t['pair']} {what}")
    key = same[0]
    threshold, cooldown = float(t["threshold"]), float(t.get("cooldown_s", 0.0))
    try:
        validate_rule(t["metric"], t["op"], threshold, cooldown, key.window, key.method)
    except ValueError as exc:
        raise AlertFileError(f"{where}: {exc}") from None
    return RuleSpec(key, t["metric"], t["op"], threshold, cooldown, t.get("name", ""))


def _sink(where: str, t: dict[str, Any], i: int, environ: Mapping[str, str]) -> Sink:
    kind = t.get("kind")
    if kind not in SINK_KINDS:
        raise AlertFileError(f"{where}: kind must be one of {', '.join(SINK_KINDS)} (got {kind!r})")
    name = t.get("name") or f"{kind}-{i + 1}"
    params: dict[str, Any] = {}
    if kind == "telegram":
        if "url" in t or "url_env" in t:
            raise AlertFileError(f"{where}: a telegram sink takes token_env and chat_id, not a url")
        if "token_env" not in t or "chat_id" not in t:
            raise AlertFileError(f"{where}: a telegram sink needs token_env and chat_id")
        target = f"env:{t['token_env']}"
        params = {"chat_id": t["chat_id"]}
        if "api_base" in t:
            params["api_base"] = t["api_base"]
    else:
        extra = [k for k in ("token_env", "chat_id", "api_base") if k in t]
        if extra:
            raise AlertFileError(f"{where}: {extra[0]} is for telegram sinks only")
        if ("url" in t) == ("url_env" in t):
            raise AlertFileError(f"{where}: give exactly one of url or url_env")
        target = t["url"] if "url" in t else f"env:{t['url_env']}"
    sink = Sink(0, name, kind, target, params)
    try:
        sink.endpoint(environ)
    except SinkConfigError as exc:
        raise AlertFileError(f"{where}: {exc}") from None
    return sink


def _secrets_file(doc: dict[str, Any], base_dir: Path | None) -> str:
    """``[secrets] file`` made absolute (relative to the alerts file), or ""."""
    table = doc.get("secrets")
    if table is None:
        return ""
    if not isinstance(table, dict):
        raise AlertFileError('secrets must be a table: [secrets] file = "..."')
    t = _check_keys("secrets", table, _SECRETS_KEYS)
    if not t.get("file", "").strip():
        raise AlertFileError("secrets: missing file")
    path = Path(t["file"]).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path)


def parse_config(
    text: str, environ: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> AlertConfig:
    """Validate an alerts file's text; raise :class:`AlertFileError` at the first problem.

    ``base_dir``: the folder a relative ``[secrets] file`` is read from (the alerts file's).
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AlertFileError(f"not valid TOML: {exc}") from None
    for k in doc:
        if k == "secrets":
            continue
        if k not in _TOP_KEYS:
            near = difflib.get_close_matches(k, [*_TOP_KEYS, "secrets"], n=1)
            hint = f" (did you mean [[{near[0]}]]?)" if near else ""
            if near == ["secrets"]:
                hint = " (did you mean [secrets]?)"
            raise AlertFileError(
                f"unknown section {k!r}{hint}: expected [[pairs]], [[rules]], [[sinks]], [secrets]"
            )
        if not isinstance(doc[k], list):
            raise AlertFileError(f"{k} must be an array of tables ([[{k}]])")
    secrets_file = _secrets_file(doc, base_dir)
    try:
        env = load_secret_environ(environ, secrets_file or None)[0]
    except SecretsError as exc:
        raise AlertFileError(str(exc)) from None
    pairs = tuple(
        _pair(f"pairs[{i + 1}]", _check_keys(f"pairs[{i + 1}]", t, _PAIR_KEYS))
        for i, t in enumerate(doc.get("pairs", []))
    )
    rules = tuple(
        _rule(f"rules[{i + 1}]", _check_keys(f"rules[{i + 1}]", t, _RULE_KEYS), pairs)
        for i, t in enumerate(doc.get("rules", []))
    )
    sinks = tuple(
        _sink(f"sinks[{i + 1}]", _check_keys(f"sinks[{i + 1}]", t, _SINK_KEYS), i, env)
        for i, t in enumerate(doc.get("sinks", []))
    )
    names = [s.name for s in sinks]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise AlertFileError(f"two sinks are named {dup!r}: give each a unique name")
    if rules and not math.isfinite(sum(r.threshold for r in rules)):
        raise AlertFileError("a threshold is not finite")
    return AlertConfig(pairs, rules, sinks, secrets_file)


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> AlertConfig:
    """Read and validate an alerts file (``AlertFileError`` names the file and the problem)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise AlertFileError(f"cannot read alerts file {p}: {reason}") from None
    try:
        return parse_config(text, environ, p.resolve().parent)
    except AlertFileError as exc:
        raise AlertFileError(f"{p}: {exc}") from None


def apply_config(writer: Any, reader: Any, config: AlertConfig) -> dict[str, int]:
    """Store the file's pairs, rules and sinks (what exists already is left as is).

    A rule counts as existing when a stored rule has the same pair, timeframe, window,
    method, metric, operator, threshold and cooldown. Returns how many of each were added.
    """
    added = {"pairs": 0, "rules": 0, "sinks": 0}
    before = len(reader.watchlist())
    for key in config.pairs:
        writer.watch_pair(key.x, key.y, key.tf, key.window, key.method)
    added["pairs"] = len(reader.watchlist()) - before
    from service.alerts import rules_from_frame

    existing = {
        (r.key(), r.metric, r.op, r.threshold, r.cooldown_s)
        for r in rules_from_frame(reader.alert_rules())
    }
    for spec in config.rules:
        ident = (spec.key, spec.metric, spec.op, spec.threshold, spec.cooldown_s)
        if ident in existing:
            continue
        writer.add_alert_rule(
            name=spec.name,
            x=spec.key.x,
            y=spec.key.y,
            tf=spec.key.tf,
            metric=spec.metric,
            op=spec.op,
            threshold=spec.threshold,
            cooldown_s=spec.cooldown_s,
            params={"window": spec.key.window, "method": spec.key.method},
        )
        existing.add(ident)
        added["rules"] += 1
    for sink in config.sinks:
        writer.add_sink(
            name=sink.name, kind=sink.kind, target=sink.target, params=dict(sink.params)
        )
        added["sinks"] += 1
    return added
