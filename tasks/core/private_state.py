"""Private local state: Perennial's folders and files under `PERENNIAL_HOME` are the user's only,
whatever the umask, for they hold data, models and credentials. Files that a library creates
later with its own mode (SQLite databases, Optuna's journal) are created here first."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_FOLDER, PRIVATE_FILE = 0o700, 0o600


def private_folder(folder: Path) -> Path:
    """`folder`, and each missing parent, created for the user only (0700). The mode is set
    after mkdir, which the umask would narrow or (umask 000) leave wide; folders that were
    already there are not changed."""
    folder = Path(folder)
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:  # another process made it first: theirs to set
            continue
        path.chmod(PRIVATE_FOLDER)
    return folder


def private_file(path: Path) -> Path:
    """An empty file for the user only (0600), in a private folder, if none is there yet: for
    files a library creates later with its own mode (SQLite databases, whose journal and WAL
    files copy the database's mode; Optuna's journal), created here first."""
    path = Path(path)
    private_folder(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    return path
