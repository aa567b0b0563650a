"""Secrets of alert sinks: the environment first, then a KEY=VALUE file outside the repository.

A sink stores only the *name* of the variable holding its secret (``env:SLACK_URL``, a
Telegram ``token_env``). The value is looked up in the process environment first, then in a
secrets file named by ``SECRETS_FILE`` (e.g. ``~/.config/desk/secrets.env``) or by
``[secrets] file = ...`` in the alerts file (which wins over ``SECRETS_FILE``)::

    # one KEY=VALUE per line; blank lines and comments are skipped
    SLACK_URL=https://hooks.slack.com/services/...
    export TELEGRAM_BOT_TOKEN="123456:ABC..."

The file must lie outside the repository (a file inside the working tree is one ``git add``
away from being published): it is refused with a one-line :class:`SecretsError`. A file that
others may read (permissions wider than 0600) is used, with a warning. No value is ever
printed: errors name the file and a line number, never the line. No Streamlit here.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from config import REPO_ROOT

log = logging.getLogger(__name__)

ENV_SECRETS_FILE = "SECRETS_FILE"
#: Largest secrets file read (bytes): a few variables, not a data file.
MAX_BYTES = 64 * 1024


class SecretsError(ValueError):
    """The secrets file cannot be used; one line naming the file and the problem."""


@dataclass(frozen=True, slots=True)
class SecretsFile:
    """A secrets file as read: its values, and a warning about its permissions (or "")."""

    path: Path
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warning: str = ""


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def read_secrets_file(path: str | os.PathLike[str], *, repo_root: Path = REPO_ROOT) -> SecretsFile:
    """Read and check a secrets file (``~`` expanded); raise :class:`SecretsError`."""
    shown = Path(path).expanduser()
    real = shown.resolve()
    root = Path(repo_root).resolve()
    if _inside(real, root):
        raise SecretsError(
            f"secrets file {shown} is inside the repository ({root}): keep it outside, "
            "e.g. ~/.config/desk/secrets.env"
        )
    try:
        info = real.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SecretsError(f"secrets file {shown} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise SecretsError(f"secrets file {shown} is larger than {MAX_BYTES // 1024} kB")
        text = real.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretsError(f"secrets file {shown} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise SecretsError(f"cannot read secrets file {shown}: {why}") from None
    warning = ""
    if info.st_mode & 0o077:
        warning = (
            f"secrets file {shown} can be read by others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"chmod 600 {shown}"
        )
    return SecretsFile(shown, MappingProxyType(_parse(text, shown)), warning)


def _parse(text: str, shown: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.isidentifier():
            # Never the line itself: it may hold a secret.
            raise SecretsError(f"secrets file {shown}: line {n} is not KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


class SecretEnviron(Mapping[str, str]):
    """The environment, then the secrets file: where sinks look their variables up.

    A variable set (and not blank) in the environment wins; the file fills in the others.
    """

    def __init__(self, environ: Mapping[str, str], file_values: Mapping[str, str]) -> None:
        self._env = environ
        self._file = file_values

    def __getitem__(self, name: str) -> str:
        value = self._env.get(name)
        if value is not None and value.strip():
            return value
        return self._file[name] if name in self._file else self._env[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._env
        yield from (k for k in self._file if k not in self._env)

    def __len__(self) -> int:
        return len(set(self._env) | set(self._file))


_warned: set[str] = set()


def load_secret_environ(
    environ: Mapping[str, str] | None = None, file: str | os.PathLike[str] | None = None
) -> tuple[Mapping[str, str], str]:
    """``environ`` (default ``os.environ``) backed by the secrets file (``file``, else
    ``$SECRETS_FILE``; just ``environ`` when neither names one), and the file's permission
    warning ("" if none). Raises :class:`SecretsError`."""
    env = os.environ if environ is None else environ
    name = file if file is not None else env.get(ENV_SECRETS_FILE, "").strip()
    if not name:
        return env, ""
    secrets = read_secrets_file(name)
    if secrets.warning and secrets.warning not in _warned:
        _warned.add(secrets.warning)
        log.warning("%s", secrets.warning)
    return SecretEnviron(env, secrets.values), secrets.warning


def secret_environ(
    environ: Mapping[str, str] | None = None, file: str | os.PathLike[str] | None = None
) -> Mapping[str, str]:
    """What sinks look their variables up in (see :func:`load_secret_environ`)."""
    return load_secret_environ(environ, file)[0]


def process_environ() -> tuple[Mapping[str, str], str]:
    """For a long-running process (the dashboard): the secret environment, and what is wrong
    with the secrets file ("" if nothing). Never raises: a refused file leaves the plain
    environment (its sinks then say their variable is not set), and the page shows why."""
    try:
        return load_secret_environ()
    except SecretsError as exc:
        if str(exc) not in _warned:
            _warned.add(str(exc))
            log.error("%s", exc)
        return os.environ, str(exc)
