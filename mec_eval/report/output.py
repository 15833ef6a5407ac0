"""Write the report's files as one set: every path checked first, each file staged beside its target, then
all renamed into place together (rolled back if one rename fails), so a report is never half old, half new.

A kill -9 can still leave a hidden staging file (``.<name>.<pid>.new``) but never a half-written report file.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from mec_eval.utils import UserError, atomic_write_bytes


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder (or file in the way) above ``path`` that exists."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def check_targets(targets: list[tuple[Path, str]], csv_dir: Path | None = None) -> None:
    """UserError naming the path, before anything is written, when an output cannot be written there.

    Args:
        targets: (file path, the flag it comes from for the message), e.g. ``[(out, "--out")]``.
        csv_dir: the ``--csv`` folder, which may exist but must not be a file.
    """
    if csv_dir is not None and csv_dir.exists() and not csv_dir.is_dir():
        raise UserError(f"--csv {csv_dir} is an existing file, not a folder; pass a folder (created when missing)")
    seen: dict[Path, str] = {}
    for path, flag in targets:
        key = Path(os.path.abspath(path))
        if key in seen:
            raise UserError(f"{flag} {path} is also the {seen[key]} file; give the report files different names")
        seen[key] = flag
        if path.is_dir():
            raise UserError(f"{flag} {path} is an existing folder, not a file; pass a file path such as "
                            f"{path / ('report' + (path.suffix or '.html'))}")
        ancestor = _existing_ancestor(path)
        if not ancestor.is_dir():
            raise UserError(f"{flag} {path}: {ancestor} is a file, so the folder {path.parent} cannot be created; "
                            "choose another path")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path}: no permission to write in {ancestor}; choose another path")


def _missing_folders(paths: list[Path]) -> list[Path]:
    """Folders the write will create, deepest first (removed again when the write fails)."""
    missing = {p for path in paths for p in path.parents if not p.exists()}
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _sync_folders(folders: set[Path]) -> None:
    """Flush the renamed directory entries (POSIX only; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _backup(path: Path) -> Path | None:
    """A hidden copy of the previous ``path`` (a hard link where possible) to restore if the set fails."""
    if not path.exists():
        return None
    backup = path.with_name(f".{path.name}.{os.getpid()}.old")
    backup.unlink(missing_ok=True)
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def _swap(staged: list[tuple[Path, Path]]) -> None:
    """Rename every staged file over its target; on any failure put every previous file back."""
    done: list[tuple[Path, Path | None]] = []
    backups: list[Path] = []
    try:
        for stage, path in staged:
            backup = _backup(path)
            if backup is not None:
                backups.append(backup)
            os.replace(stage, path)
            done.append((path, backup))
    except BaseException:
        for path, backup in reversed(done):
            if backup is not None:
                os.replace(backup, path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups:
            backup.unlink(missing_ok=True)


def write_set(files: dict[Path, bytes]) -> None:
    """Write all ``files`` or none: an OSError is a UserError naming the path, the previous set stays."""
    created = _missing_folders(list(files))
    staged: list[tuple[Path, Path]] = []
    current, written = None, False
    try:
        for path, data in files.items():
            current = path
            stage = path.with_name(f".{path.name}.{os.getpid()}.new")
            atomic_write_bytes(stage, data)
            staged.append((stage, path))
        current = None
        _swap(staged)
        written = True
    except OSError as err:
        where = current or err.filename2 or err.filename or "a report file"
        raise UserError(f"cannot write {where} ({err.strerror or err}); no report file was replaced: free disk "
                        "space or choose another --out") from None
    finally:
        for stage, _ in staged:
            stage.unlink(missing_ok=True)
        for folder in created if not written else []:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    _sync_folders({path.parent for path in files})
