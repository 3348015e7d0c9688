"""Reading a workflow file without trusting it: regular files only, never blocking, bounded in size, UTF-8 text.

A FIFO would block ``open()`` until a writer comes, a symlink to ``/dev/zero`` would be read forever, and a
multi-gigabyte file would be read into memory before anything could say no. So the file is opened non-blocking,
checked with ``fstat`` on the descriptor actually opened (no race between a check and the open), and read up to
the limit plus one byte.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from engine.spec.errors import SpecError

#: Largest workflow file read, in bytes. A 50,000-task file is about 3.5 MB.
MAX_FILE_BYTES = 10 * 1024 * 1024

# Characters YAML allows in a stream (YAML 1.2 §5.1: c-printable); anything else is binary junk or a mistake.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_KINDS = (
    (stat.S_ISDIR, "is a directory, not a workflow file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file; workflow files must be regular files"),
    (stat.S_ISCHR, "is a character device, not a regular file; workflow files must be regular files"),
    (stat.S_ISBLK, "is a block device, not a regular file; workflow files must be regular files"),
    (stat.S_ISSOCK, "is a socket, not a regular file; workflow files must be regular files"),
)


def read_text(path: str | Path) -> str:
    """The text of the workflow file at ``path``.

    Raises:
        SpecError: It is missing, unreadable, not a regular file, larger than `MAX_FILE_BYTES`, not UTF-8, or holds
            characters YAML does not allow (NUL and other control characters).
    """
    source = str(path)
    raw = _read_bytes(source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError("the file is not UTF-8 text", path=source, line=line) from None
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise SpecError(
            f"the file contains the control character U+{ord(bad.group()):04X}; is it a text file?",
            path=source,
            line=line,
        )
    return text


def _read_bytes(source: str) -> bytes:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(source, flags)
    except FileNotFoundError:
        raise SpecError("no such file", path=source) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a workflow file", path=source) from None
    except PermissionError:
        raise SpecError("permission denied", path=source) from None
    except OSError as exc:
        raise SpecError(f"cannot open the file: {exc.strerror or exc}", path=source) from None
    try:
        info = os.fstat(fd)
        for is_kind, problem in _KINDS:
            if is_kind(info.st_mode):
                raise SpecError(problem, path=source)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError("is not a regular file", path=source)
        if info.st_size > MAX_FILE_BYTES:
            raise SpecError(_too_big(info.st_size), path=source)
        # A file can grow after fstat (or report size 0, like /proc files): never read past the limit.
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise SpecError(_too_big(size, at_least=True), path=source)
        return b"".join(chunks)
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", path=source) from None
    finally:
        os.close(fd)


def _too_big(size: int, *, at_least: bool = False) -> str:
    shown = f"more than {MAX_FILE_BYTES:,} bytes" if at_least else f"{size:,} bytes"
    return f"the file is {shown}; workflow files are limited to {MAX_FILE_BYTES // (1024 * 1024)} MiB"
