"""File modes of the store: its directory ``0700``, the database (and ``-wal``, ``-shm``) ``0600``
(:func:`secure_files`, run before every open).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

_logger = logging.getLogger(__name__)

_WARNED_DIRECTORIES: set[Path] = set()


def secure_files(path: Path) -> None:
    """Create the store's missing directories ``0700`` and its database ``0600``; fix or warn about looser modes.

    Runs before every open. Files this module owns (the database, ``-wal``, ``-shm``) are made ``0600`` with a
    warning when group or others may read them; an existing directory open to others is only warned about.
    """
    directory = path.parent
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)
    if not missing and directory not in _WARNED_DIRECTORIES:
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o077:
            _WARNED_DIRECTORIES.add(directory)  # once per process: reopening after a failure must not repeat it
            _logger.warning("join store directory %s has mode %o: group or others can reach the store files; "
                            "`chmod 700` it (or give the store a directory of its own)", directory, mode)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(name.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            _logger.warning("join store file %s had mode %o: made 0600 (owner only)", name, mode)
            os.chmod(name, 0o600)
