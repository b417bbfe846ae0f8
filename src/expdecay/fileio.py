"""Safe file output and bounded file input.

Every file expdecay writes (vector files, reports, plots, the vectors of a
search, the reports of ``expdecay check``) goes through :func:`atomic_write`
or :func:`atomic_open`; vector files are read through :func:`read_limited`.

Atomic replacement
------------------
The data goes to a temporary file created in the target's own directory
(same file system, so the final step is a rename, never a copy), is flushed
and ``fsync``-ed, and then renamed over the target with :func:`os.replace`,
which POSIX and Windows perform atomically.  A reader, and the target after
any crash, sees either the complete previous file or the complete new one,
never a truncated or partly written file.  The directory is ``fsync``-ed
afterwards (POSIX, best effort) so that the rename itself is durable.

Each call creates its own temporary file (:func:`tempfile.mkstemp`:
``O_CREAT | O_EXCL`` with a random part), so concurrent writers of the same
target never share one: the last rename wins and the target is always exactly
one writer's complete output.  A path that is a symbolic link is resolved
first, so the file it points to is replaced (as ``open(path, "w")`` would
write through the link).  An existing target keeps its permission bits; a new
one gets ``0o666`` less the umask, as ``open`` would give it.

Temporary names and stale temporaries
-------------------------------------
The temporary file of target ``NAME`` is ``.NAME.PID.XXXXXXXX.tmp``: hidden,
named after its target, carrying the id of the writing process and
``mkstemp``'s random part, e.g. ``.examples.json.4711.k2j3h4zq.tmp``.  On
failure or interruption (any exception, ``KeyboardInterrupt`` included) the
writer removes its temporary file; only a writer that dies outright
(``SIGKILL``, power loss) leaves one behind.  Such leftovers are removed by the
next write of the same target: before creating its own temporary file, a
writer deletes the temporaries of that target whose process no longer exists
(:func:`remove_stale_temps`).  Temporaries of live processes (concurrent
writers, or other threads of this process) are never touched.

Limits of the scheme: liveness is tested with ``kill(pid, 0)``, so it only
means something for writers on the same host and in the same PID namespace.
A reused pid keeps a leftover until that process ends (a stray file, never a
damaged target).  If a directory is shared between hosts or containers, a
writer there whose pid is not alive here can lose its temporary file to this
cleanup; its rename then fails with ``FileNotFoundError`` and it reports an
error: the target is still never partly written.  Outside POSIX no cleanup is
attempted (``os.kill`` would terminate the process there).

Bounded reads
-------------
:func:`read_limited` reads a *regular* file of at most ``limit`` bytes and
never more than ``limit + 1`` bytes, whatever the file claims to be: FIFOs,
devices such as ``/dev/zero``, sockets and directories are refused before any
read (the file is opened without blocking, then checked with ``fstat`` on the
open descriptor, so a path swapped between the check and the read cannot slip
through), and a file that keeps growing, or whose size ``stat`` reports
wrongly (``/proc``), is cut off after ``limit + 1`` bytes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, overload

from .errors import ExpdecayError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_open",
    "atomic_write",
    "temp_prefix",
    "stale_temps",
    "remove_stale_temps",
    "ReadRefusedError",
    "read_limited",
]

#: Suffix of every temporary file :func:`atomic_open` creates.
TEMP_SUFFIX = ".tmp"

#: ``PID.RANDOM`` between the prefix and the suffix of a temporary name.
_TEMP_MIDDLE = re.compile(r"([0-9]{1,10})\.[A-Za-z0-9_]{1,32}")

_READ_CHUNK = 1 << 20


def temp_prefix(target: str | os.PathLike[str], pid: int | None = None) -> str:
    """The start of the temporary names of ``target`` written by ``pid``
    (default: this process).

    >>> temp_prefix("out/examples.json", pid=4711)
    '.examples.json.4711.'
    """
    return f".{Path(target).name}.{os.getpid() if pid is None else pid}."


def _temp_pid(name: str, target_name: str) -> int | None:
    """The pid in ``name`` if it is a temporary name of ``target_name``."""
    head = f".{target_name}."
    if not (name.startswith(head) and name.endswith(TEMP_SUFFIX)):
        return None
    match = _TEMP_MIDDLE.fullmatch(name[len(head):-len(TEMP_SUFFIX)])
    return int(match.group(1)) if match else None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (True whenever it cannot be told)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but is not ours, or an id we cannot ask about
    return True


def stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Temporary files of ``target`` left by processes that no longer exist."""
    path = Path(target)
    directory = path.parent
    me = os.getpid()
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        pid = _temp_pid(entry.name, path.name)
        if pid is None or pid == me:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        if not _pid_alive(pid):
            found.append(directory / entry.name)
    return sorted(found)


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Delete :func:`stale_temps` of ``target``; returns those removed."""
    removed = []
    for p in stale_temps(target):
        with contextlib.suppress(FileNotFoundError):  # another writer got there first
            p.unlink()
            removed.append(p)
    return removed


@functools.cache
def _umask() -> int:
    # There is no way to read the umask without setting it; done once, and
    # set straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@overload
def atomic_open(path: str | os.PathLike[str], mode: Literal["wb"] = "wb", *,
                encoding: str = "utf-8") -> contextlib.AbstractContextManager[IO[bytes]]: ...
@overload
def atomic_open(path: str | os.PathLike[str], mode: Literal["w"], *,
                encoding: str = "utf-8") -> contextlib.AbstractContextManager[IO[str]]: ...
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *,
                encoding: str = "utf-8") -> contextlib.AbstractContextManager[IO[bytes] | IO[str]]:
    """A context manager yielding a file open on a fresh temporary file
    beside ``path``; when the block ends normally the data is flushed,
    ``fsync``-ed and atomically renamed to ``path``.  If the block raises,
    the temporary file is removed and ``path`` is left as it was.

    ``mode`` is ``"wb"`` or ``"w"`` (text in ``encoding``, newlines written
    as given).  Parent directories are created.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_open(os.path.join(d, "a.txt"), "w") as f:
    ...     _ = f.write("hello\\n")
    >>> open(os.path.join(d, "a.txt")).read()
    'hello\\n'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
    return _atomic_open(Path(path), mode, encoding)


@contextlib.contextmanager
def _atomic_open(path: Path, mode: str, encoding: str) -> Iterator[IO[bytes] | IO[str]]:
    target = Path(os.path.realpath(path))
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=temp_prefix(target), suffix=TEMP_SUFFIX)
    try:
        raw = os.fdopen(fd, "wb")
        with raw:
            if mode == "w":
                text = io.TextIOWrapper(raw, encoding=encoding, newline="")
                yield text
                text.flush()
            else:
                yield raw
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *,
                 encoding: str = "utf-8") -> Path:
    """Replace ``path`` atomically with ``data`` (``str`` is encoded with
    ``encoding``, newlines unchanged); returns ``Path(path)``.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "b.bin")
    >>> atomic_write(p, b"\\x00\\x01").read_bytes()
    b'\\x00\\x01'
    """
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_open(path, "wb") as f:
        f.write(payload)
    return Path(path)


class ReadRefusedError(ExpdecayError, ValueError):
    """:func:`read_limited` refused a file; ``str()`` is ``"PATH: reason"``."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "an unknown kind of file"


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes:
    """The contents of the regular file ``path``, at most ``limit`` bytes.

    Raises :class:`ReadRefusedError` for anything but a regular file and
    for a file longer than ``limit`` (detected by reading ``limit + 1``
    bytes, not by trusting its size); ``OSError`` when it cannot be opened
    or read.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an int >= 0; got {limit!r}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ReadRefusedError(f"{os.fspath(path)}: not a regular file ({_kind(mode)})")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(_READ_CHUNK, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    if got > limit:
        raise ReadRefusedError(f"{os.fspath(path)}: larger than {limit} bytes")
    return b"".join(chunks)
