"""The tasks visionkit knows, in a module with no heavy imports.

The pipeline checks the task before it decides whether it needs the request layer at all, so this check
must not import :mod:`visionkit.gemini` (and with it ``requests``) on the offline path.
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["TASKS", "check_task"]

TASKS = ("detect", "segment")


def check_task(task: str) -> None:
    """Raise :class:`ConfigError` unless ``task`` is one of :data:`TASKS`."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
