"""expdecay.fileio: atomic replacement, unique temporaries, cleanup of the
temporaries of dead writers, and bounded reads of regular files only."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from expdecay import fileio
from expdecay.conformance import vectors
from expdecay.conformance.vectors import generation as vectors_generation

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX processes and signals")


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging if a read blocks (POSIX)."""
    if os.name != "posix":
        yield
        return

    def timeout(signum: int, frame: object) -> None:
        raise TimeoutError("blocked for 10 s")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(fileio.TEMP_SUFFIX))


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def test_atomic_write_str_and_bytes(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "a.txt"
    assert fileio.atomic_write(target, "caf\u00e9\r\nx\n") == target
    assert target.read_bytes() == "caf\u00e9\r\nx\n".encode()  # newlines untouched
    fileio.atomic_write(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    with pytest.raises(UnicodeEncodeError):
        fileio.atomic_write(target, "\u00e9", encoding="ascii")
    assert target.read_bytes() == b"\x00\xff"
    assert _temps(target.parent) == []


def test_vectors_keeps_the_same_writer() -> None:
    """The vector writer imports atomic_write from fileio: it is this one."""
    assert vectors_generation.atomic_write is fileio.atomic_write


def test_replaces_rather_than_rewrites(tmp_path: Path) -> None:
    """The old file (seen through a hard link) is never modified: the new
    content is a new file renamed over the name."""
    target = tmp_path / "t.json"
    target.write_text("old")
    os.link(target, tmp_path / "old-link")
    fileio.atomic_write(target, "new")
    assert target.read_text() == "new"
    assert (tmp_path / "old-link").read_text() == "old"


@posix_only
def test_permissions(tmp_path: Path) -> None:
    target = tmp_path / "p.txt"
    fileio.atomic_write(target, "a")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    target.chmod(0o600)
    fileio.atomic_write(target, "b")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@posix_only
def test_symlink_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    fileio.atomic_write(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_failure_inside_the_block_keeps_the_target(tmp_path: Path) -> None:
    target = tmp_path / "t.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), fileio.atomic_open(target) as f:
        f.write(b"half of the ")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous"
    assert _temps(tmp_path) == []
    with pytest.raises(KeyboardInterrupt), fileio.atomic_open(target, "w") as f:
        f.write("x")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"previous" and _temps(tmp_path) == []


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        fileio.atomic_open("x", "a")  # type: ignore[call-overload]


# ---------------------------------------------------------------------------
# A writer killed mid-write, and the cleanup of what it leaves
# ---------------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from expdecay.fileio import atomic_open
    with atomic_open(sys.argv[1], "wb") as f:
        f.write(b"partial new content")
        f.flush()
        print("ready", flush=True)
        time.sleep(60)
""")


@posix_only
def test_killed_writer_keeps_the_target_and_its_temp_is_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "examples.json"
    target.write_text("complete old content")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        # mid-write: the target is still the old file
        assert target.read_text() == "complete old content"
    finally:
        proc.kill()
        proc.wait()
    assert target.read_text() == "complete old content"
    [stray] = _temps(tmp_path)
    assert stray.startswith(f".examples.json.{proc.pid}.")  # recognisable: target and pid
    assert (tmp_path / stray).read_bytes() == b"partial new content"
    assert fileio.stale_temps(target) == [tmp_path / stray]

    fileio.atomic_write(target, "newer")
    assert target.read_text() == "newer"
    assert _temps(tmp_path) == []


@posix_only
def test_cleanup_spares_live_writers_and_other_files(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    dead, me = _dead_pid(), os.getpid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".report.html.{dead}.abcd1234.tmp",
            "live": f".report.html.{live.pid}.abcd1234.tmp",
            "mine": f".report.html.{me}.abcd1234.tmp",  # e.g. another thread's write
            "other target": f".report.htm.{dead}.abcd1234.tmp",
            "longer target": f".report.html.1.{dead}.abcd1234.tmp",
            "no pid": ".report.html.abcd1234.tmp",
            "not temp": f".report.html.{dead}.abcd1234",
        }
        for n in names.values():
            (tmp_path / n).write_text("x")
        (tmp_path / f".report.html.{dead}.dir00000.tmp").mkdir()
        assert fileio.stale_temps(target) == [tmp_path / names["dead"]]
        fileio.atomic_write(target, "r")
        left = {p.name for p in tmp_path.iterdir()}
        assert names["dead"] not in left
        assert {v for k, v in names.items() if k != "dead"} <= left
    finally:
        live.kill()
        live.wait()
    # the writer is gone now: its temporary is stale
    assert fileio.remove_stale_temps(target) == [tmp_path / names["live"]]


def test_vector_generation_removes_a_dead_writers_temp(tmp_path: Path) -> None:
    """The leftover of a killed ``vectors generate`` (the bug report's
    ``.examples.json.XXXX.tmp``) disappears at the next generation."""
    if os.name != "posix":
        pytest.skip("pid liveness is POSIX only")
    stray = tmp_path / f".examples.json.{_dead_pid()}.k2j3h4zq.tmp"
    stray.write_text("{\"half\": ")
    vectors.write_vectors(tmp_path, ["examples"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples.json"]


# ---------------------------------------------------------------------------
# Concurrent writers
# ---------------------------------------------------------------------------

_CHUNK = 1 << 16
_CHUNKS = 48  # 3 MiB per writer


def _slow_writer(target: str, tag: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    with fileio.atomic_open(target) as f:
        for _ in range(_CHUNKS):
            f.write(bytes([tag]) * _CHUNK)
            f.flush()
            time.sleep(0.001)  # let the writers interleave


def test_concurrent_writers_leave_one_complete_file(tmp_path: Path) -> None:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    target = tmp_path / "same.html"
    payloads = {tag: bytes([tag]) * (_CHUNK * _CHUNKS) for tag in (1, 2, 3, 4)}
    for _ in range(2):
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_slow_writer, args=(str(target), tag, barrier))
                 for tag in payloads]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert target.read_bytes() in payloads.values()
        assert _temps(tmp_path) == []


# ---------------------------------------------------------------------------
# Bounded reads
# ---------------------------------------------------------------------------


def test_read_limited_regular_files(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 10)
    assert fileio.read_limited(p, 10) == b"x" * 10
    with pytest.raises(fileio.ReadRefusedError, match=f"^{p}: larger than 9 bytes$"):
        fileio.read_limited(p, 9)
    with pytest.raises(FileNotFoundError):
        fileio.read_limited(tmp_path / "absent", 10)
    with pytest.raises(ValueError, match="limit"):
        fileio.read_limited(p, -1)


@posix_only
def test_read_limited_refuses_what_is_not_a_regular_file(tmp_path: Path, alarm: None) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: a blocking open or read would wait forever
    with pytest.raises(fileio.ReadRefusedError, match=r"fifo: not a regular file \(a FIFO\)"):
        fileio.read_limited(fifo, 100)
    with pytest.raises(fileio.ReadRefusedError, match="a directory"):
        fileio.read_limited(tmp_path, 100)
    if os.path.exists("/dev/zero"):
        with pytest.raises(fileio.ReadRefusedError, match="a character device"):
            fileio.read_limited("/dev/zero", 100)


def test_read_limited_does_not_trust_the_size(alarm: None) -> None:
    """/proc files are regular files that report size 0: the limit holds."""
    proc_file = Path("/proc/self/status")
    if not proc_file.exists() or proc_file.stat().st_size != 0:
        pytest.skip("needs Linux /proc")
    with pytest.raises(fileio.ReadRefusedError, match="larger than 16 bytes"):
        fileio.read_limited(proc_file, 16)
