"""The per-user cache of what visionkit learned about each model: ``models.json``.

Where it lives: ``$XDG_CACHE_HOME/visionkit/models.json``; without ``XDG_CACHE_HOME``, the platform's cache
folder, as platformdirs' ``user_cache_dir`` picks it (``~/.cache`` on Linux and other POSIX systems,
``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows)::

    {"version": 1, "models": {
      "gemini-4.2-flash-exp": {
        "date": "2026-12-07", "time": 1796601600.0,
        "thinks": true, "thinks_source": "models.get",
        "sent": {"thinkingLevel": "low"}, "sent_source": "probe (a text-only request) answered 200",
        "refused": [{"config": {"thinkingLevel": "minimal"}, "date": "2026-12-07",
                     "source": "400: Thinking level THINKING_LEVEL_MINIMAL is unsupported for this model."}],
        "methods": ["generateContent", "countTokens"], "input_limit": 1048576, "output_limit": 65536}}}

* An entry older than :data:`MAX_AGE_DAYS` is not used (the fleet moves: a model's rules can change under
  the same id); ``visionkit label --refresh-models`` ignores every entry and learns again.
* Writes are atomic (a temp file renamed over the cache) and made under an exclusive lock on
  ``models.json.lock``, re-reading the file first, so concurrent runs merge their entries instead of
  losing one.
* A cache that cannot be read (not JSON, wrong shape) is renamed ``models.json.corrupt-<time>-<random>``
  and a warning says so; the run goes on as if it were empty. The move is made under the same lock as
  writes, after reading the file again, so a good cache another run just wrote is never set aside.
* Each entry is checked when read (:func:`entry_problem`): ``time`` a finite number not later than now
  plus :data:`CLOCK_SKEW`, ``sent`` a thinking setting, ``refused`` a list of ``{"config": setting}``.
  An entry that fails is not used (listed as stale) and a warning names it; it never stops a run.
* No secret is stored: only model ids, thinking settings and the API's messages, which the transport has
  already stripped of any echo of the key; :meth:`ModelCache.record` takes a ``redact`` callable as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..media.atomic import atomic_open

__all__ = ["CACHE_NAME", "CLOCK_SKEW", "MAX_AGE_DAYS", "ModelCache", "cache_path", "entry_problem",
           "is_config"]

CACHE_NAME = "models.json"
#: Days an entry is trusted.
MAX_AGE_DAYS = 30
#: Seconds an entry's ``time`` may lie in the future (clocks of machines sharing a home differ a little).
CLOCK_SKEW = 3600.0
_VERSION = 1


def is_config(value: Any) -> bool:
    """A thinkingConfig worth sending again: None, or one level name or one whole budget."""
    if value is None:
        return True
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key, setting), = value.items()
    return (key == "thinkingLevel" and isinstance(setting, str) and setting.isalpha()) or \
        (key == "thinkingBudget" and isinstance(setting, int) and not isinstance(setting, bool)
         and 0 <= setting <= 1_000_000)


def entry_problem(entry: Mapping[str, Any], now: float) -> str | None:
    """What makes a cache entry unusable (a sentence), or None when its fields have the written shapes."""
    stamp = entry.get("time")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        return f"its time is {stamp!r:.60}, not a number"
    if not 0 <= stamp <= now + CLOCK_SKEW:  # False for nan too; exact for a huge int (no float overflow)
        return f"its time {stamp!r:.60} is not a moment up to now"
    if "sent" in entry and not is_config(entry["sent"]):
        return f"its sent {entry['sent']!r:.60} is not a thinking setting"
    refused = entry.get("refused", [])
    if not isinstance(refused, list) or not all(isinstance(r, dict) and is_config(r.get("config"))
                                                for r in refused):
        return "its refused is not a list of {\"config\": thinking setting}"
    return None


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/visionkit/models.json``, else the platform's user cache folder (module doc)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative path is invalid and must be ignored
        base = Path(xdg)
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path.home() / ".cache"
    return base / "visionkit" / CACHE_NAME


def today(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


class ModelCache:
    """The learned-models cache (see the module docstring). Safe to share between threads and processes.

    Args:
        path: the cache file (default :func:`cache_path`).
        max_age_days: entries older than this are not used.
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, max_age_days: float = MAX_AGE_DAYS,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path) if path is not None else cache_path()
        self.max_age = max_age_days * 86400.0
        self.clock = clock
        self.warnings: list[str] = []  # what the caller should tell the user once (a corrupt cache)

    # -- reading -------------------------------------------------------------------------------------------

    def entries(self) -> dict[str, dict]:
        """Every entry, fresh or not (``visionkit models`` lists them), each with ``"stale"`` set."""
        now = self.clock()
        found = {}
        for model, entry in self._read().items():
            problem = entry_problem(entry, now)
            if problem is not None:
                self._warn(f"the model cache {self.path} entry {model!r:.80} is not used: {problem}; "
                           "the model is learned again")
            stale = problem is not None or now - entry["time"] > self.max_age
            found[model] = {**entry, "stale": stale}
        return found

    def get(self, model: str) -> dict | None:
        """The fresh entry for ``model``, or None (none, or older than ``max_age_days``)."""
        entry = self.entries().get(model)
        return None if entry is None or entry["stale"] else entry

    def _read(self, *, locked: bool = False) -> dict[str, dict]:
        """The file's models; a corrupt file is set aside under the lock (``locked``: held already)."""
        models, problem = self._load()
        if problem is None:
            return models
        if locked:
            self._set_aside(problem)
            return {}
        try:
            with self._locked():
                models, problem = self._load()  # another run may have replaced it since
                if problem is not None:
                    self._set_aside(problem)
        except OSError as exc:  # no lock file can be made (a read-only folder): nothing can be moved either
            self._warn(f"the model cache {self.path} is corrupt ({problem}) and could not be set aside "
                       f"({exc}); it is ignored")
        return models

    def _load(self) -> tuple[dict[str, dict], BaseException | None]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            self._warn(f"the model cache {self.path} cannot be read ({exc}); models are learned again")
            return {}, None
        try:
            data = json.loads(raw.decode("utf-8"))
            models = data["models"]
            if data.get("version") != _VERSION or not isinstance(models, dict) \
                    or not all(isinstance(k, str) and isinstance(v, dict) for k, v in models.items()):
                raise ValueError("not a visionkit model cache")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:  # incl. bad UTF-8
            return {}, exc
        return models, None

    def _set_aside(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{secrets.token_hex(4)}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as move_error:
            self._warn(f"the model cache {self.path} is corrupt ({exc}) and could not be set aside "
                       f"({move_error}); it is ignored")
            return
        self._warn(f"the model cache {self.path} was corrupt ({exc}); it was moved to {aside.name} and "
                   "models are learned again")

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # -- writing -------------------------------------------------------------------------------------------

    def record(self, model: str, entry: Mapping[str, Any], *,
               redact: Callable[[str], str] | None = None) -> bool:
        """Store ``entry`` for ``model`` (replacing the old one), dated now; False when the cache cannot be
        written (a read-only home: the run goes on, and the model is learned again next time)."""
        now = self.clock()
        clean = json.loads(json.dumps(dict(entry), default=str))
        if redact is not None:
            clean = _redact(clean, redact)
        clean.update(date=today(now), time=now)
        clean.pop("stale", None)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                models = self._read(locked=True)
                models[model] = clean
                with atomic_open(self.path, "w") as fh:
                    json.dump({"version": _VERSION, "models": models}, fh, indent=1, sort_keys=True)
        except (OSError, ExportError) as exc:  # a read-only home, a full disk
            self._warn(f"the model cache {self.path} cannot be written ({exc}); what was learned about "
                       f"{model} holds for this run only")
            return False
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on ``models.json.lock`` (flock; msvcrt on Windows), waited for. A file system
        without locks goes on unlocked (the write itself stays atomic)."""
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            with contextlib.suppress(OSError):
                if os.name == "nt":  # pragma: no cover - Windows
                    import msvcrt

                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                else:
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _redact(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v, redact) for k, v in value.items()}
    return value
