"""Where the engine keeps what tasks must not reach - the database, the control socket and its token, every task's
working directory - and which of those a sandbox hides (``LocalSandbox(hidden=...)``).

A task once listed workflows (with their ``--var`` values) and cancelled its own workflow through the control
socket beside the database, which bubblewrap's read-only ``/`` left in plain view at ``../../../``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from db.connection import embedded_path
from db.settings import default_data_dir

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


def runtime_dir() -> Path:
    """This user's directory for engine secrets and long socket paths (``$TMPDIR/agentdeck-UID``, mode 0700).

    Under ``/tmp`` by default, which bubblewrap replaces with a private one: invisible to sandboxed tasks twice.
    """
    return Path(tempfile.gettempdir()) / f"agentdeck-{os.getuid()}"


def control_socket_path(db_url: str) -> Path | None:
    """Where the owner of an embedded file database listens; None for mem:// and servers."""
    path = embedded_path(db_url)
    if path is None:
        return None
    beside = Path(f"{path.resolve()}.control.sock")
    if len(str(beside)) <= _MAX_SOCKET_PATH:
        return beside
    return runtime_dir() / f"{_digest(beside)}.sock"


def control_token_path(socket: Path) -> Path:
    """The file holding the token clients of the engine listening on ``socket`` must present (mode 0600)."""
    return runtime_dir() / f"{_digest(socket)}.token"


def _digest(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()[:16]


def hidden_from_sandboxes(db_url: str, workdir_root: Path) -> list[Path]:
    """What a sandboxed task must not see, for an engine on ``db_url`` keeping task directories in ``workdir_root``.

    The directory holding the database is hidden whole (socket, token, other databases and their task directories
    included), unless it is ``/`` or holds your home or the current directory - then just the database, its
    socket and the task directories. Always hidden: the default data directory and :func:`runtime_dir`. A task's
    own working directory and its upstream directories are bound back on top by the sandbox.
    """
    hidden = [default_data_dir(), runtime_dir(), workdir_root]
    database = embedded_path(db_url)
    if database is not None:
        database = Path(os.path.abspath(database))
        directory = database.parent
        if _holds_user_files(directory):
            hidden.append(database)
        else:
            hidden.append(directory)
        socket = control_socket_path(db_url)
        if socket is not None:
            hidden.append(socket)
    return hidden


def _holds_user_files(directory: Path) -> bool:
    """``directory`` is ``/``, the home directory, the current directory or one above them."""
    directory = directory.resolve()
    for inside in (Path.home(), Path.cwd()):
        if inside.resolve().is_relative_to(directory):
            return True
    return directory == Path("/")
