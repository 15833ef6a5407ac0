"""Small shared helpers: the user-error type, atomic file writes, hashing, and resource lookup."""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix (bad flag, config key, dataset path, checkpoint).

    The CLI prints the message on one line and exits with code 2; no traceback.
    """


# Set on an exception that every process of a torch.distributed run raised together (dist.py):
# process 0 prints it, so the CLI of the other processes stays silent instead of repeating it.
SHARED_WITH_PEERS = "_mec_eval_shared_with_peers"


def is_main_process_env() -> bool:
    """Rank 0 (or no process group), read from torchrun's / submitit's ``RANK`` without torch."""
    return os.environ.get("RANK", "0") == "0"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    Writes a temporary file in the same folder, fsyncs it, then renames it over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask),
        # so reports and results stay readable by the colleagues they are shared with.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic text write (UTF-8); see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file, fsync and rename: a kill never leaves half a file."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is flushed (POSIX only).
    if sys.platform.startswith("win"):
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def resource_dir(name: str) -> Path:
    """Locate a top-level data folder of the project (``tasks``, ``configs``, ``checkpoints``, ...).

    Looked up, in order: ``$MEC_EVAL_HOME/<name>``, the source checkout next to the package
    (editable installs), and ``<sys.prefix>/share/mec-eval/<name>`` (wheel installs).
    """
    candidates = []
    if os.environ.get("MEC_EVAL_HOME"):
        candidates.append(Path(os.environ["MEC_EVAL_HOME"]) / name)
    candidates.append(Path(__file__).resolve().parent.parent / name)
    candidates.append(Path(sys.prefix) / "share" / "mec-eval" / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise UserError(
        f"cannot find the '{name}' folder of mec-eval (looked in: {', '.join(map(str, candidates))}); "
        "set MEC_EVAL_HOME to the project checkout"
    )
