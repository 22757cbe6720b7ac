"""Names from files that become paths: one check, so nothing is written (or read) outside its folder.

A run's ``annotations.json``, ``sources.json`` and ``keys.json`` are data that anyone can edit, and their
names (``file_name``, the per-image key) become paths under a command's folder: ``DEST/images/<split>/``,
``DEST/labels/<split>/``, ``OUT/overlays/``, ``OUT/report/thumbs/``. A name is refused with an
:class:`~visionkit.errors.InputError` naming the file and the field when it

* is not a non-empty string, or holds a NUL character;
* is absolute (``/etc/x``, ``\\\\server\\share``, ``C:\\x``, ``C:x``);
* has a ``..`` component (``/`` and ``\\`` both count as separators: a run may come from Windows);
* resolves outside the folder once symlinks already on disk are followed (``sub/x.jpg`` where ``sub``
  links elsewhere).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError

__all__ = ["check_name", "safe_join"]

_DRIVE = re.compile(r"^[A-Za-z]:")


def check_name(name: object, *, file: str | os.PathLike, field: str) -> str:
    """``name`` when it is a relative name without ``..`` components; else InputError naming ``file``
    and ``field`` (see the module docstring). Looks at the text only, not at the disk."""
    where = f"{file}: {field}"
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: expected a non-empty relative file name, got {name!r}")
    if "\0" in name:
        raise InputError(f"{where}: {name!r} holds a NUL character; expected a relative file name")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise InputError(f"{where}: {name!r} is an absolute path; expected a name relative to the folder "
                         "(a name that becomes a path must stay inside it)")
    if ".." in re.split(r"[/\\]", name):
        raise InputError(f"{where}: {name!r} has a '..' component; expected a name that stays inside "
                         "the folder")
    return name


def safe_join(root: str | os.PathLike, name: object, *, file: str | os.PathLike, field: str) -> Path:
    """``root / name``, after :func:`check_name`, and only when it resolves inside ``root`` (symlinks on
    disk followed, the missing rest of the path taken as it is). Raises InputError naming ``file`` and
    ``field`` otherwise."""
    check_name(name, file=file, field=field)
    root = Path(root)
    path = root / name
    base = root.resolve()
    target = path.resolve()
    if target != base and base not in target.parents:
        raise InputError(f"{file}: {field}: {name!r} resolves to {target}, outside {root} (through a "
                         "symlink); expected a name that stays inside the folder")
    return path
