"""The one writer: atomic, umask-respecting, mode-keeping, and never over a special file."""

import errno
import os
import socket
import stat

import pytest

from gpt2core import fsutil
from gpt2core.errors import UserError
from gpt2core.fsutil import (
    COMPLETE_NAME,
    UnsafeTargetError,
    atomic_write,
    atomic_write_files,
    atomic_write_text,
    publish_dir,
    recover_dir,
)


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_new_files_and_directories_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert mode(tmp_path / "a.txt") == file_mode
    target = publish_dir(tmp_path / "ck", lambda d: atomic_write_text(d / "f.json", "{}"))
    assert mode(target) == dir_mode and mode(target / "f.json") == file_mode
    # a library that creates its own file 0600 (safetensors does) is put right
    atomic_write(tmp_path / "b.bin", lambda p: (os.unlink(p), os.close(os.open(p, 0o101, 0o600))))
    assert mode(tmp_path / "b.bin") == file_mode


@pytest.mark.parametrize("existing", [0o644, 0o640, 0o600, 0o664])
def test_replacing_a_file_keeps_its_mode(tmp_path, umask, existing):
    umask(0o077)
    p = tmp_path / "t.json"
    p.write_text("old")
    os.chmod(p, existing)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and mode(p) == existing
    assert names(tmp_path) == ["t.json"]


def test_a_symlink_to_a_regular_file_is_written_through(tmp_path):
    real = tmp_path / "real.md"
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.md"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new" and mode(real) == 0o640
    assert names(tmp_path) == ["link.md", "real.md"]


def _fifo(tmp_path):
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


def _socket(tmp_path):
    p = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()
    return p


def _link_to_dev_null(tmp_path):
    p = tmp_path / "null"
    p.symlink_to("/dev/null")
    return p


def _dangling(tmp_path):
    p = tmp_path / "dangling"
    p.symlink_to(tmp_path / "nowhere" / "x")
    return p


def _directory(tmp_path):
    p = tmp_path / "dir"
    p.mkdir()
    return p


@pytest.mark.parametrize(
    "make,needle",
    [
        (_fifo, "FIFO"),
        (_socket, "socket"),
        (_link_to_dev_null, "a device"),
        (_dangling, "does not exist"),
        (_directory, "a directory"),
    ],
)
def test_special_files_are_refused_in_one_line_and_left_alone(tmp_path, make, needle):
    p = make(tmp_path)
    before = os.lstat(p)
    with pytest.raises(UnsafeTargetError) as e:
        atomic_write_text(p, "text")  # a FIFO would block an open(); we never open it
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, UserError) and isinstance(e.value, OSError)
    after = os.lstat(p)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_session_save_refuses_a_fifo_and_keeps_a_files_mode(tmp_path):
    """`:save PATH` goes through the writer: a FIFO is an error reply, a mode is kept."""
    from repl.session import Session
    from tests.repl.fakes import FakeLoader

    s = Session(model="fake", loader=FakeLoader(), history_path=tmp_path / "h.jsonl")
    fifo = _fifo(tmp_path)
    r = s.handle(f":save {fifo}")
    assert r.level == "error" and "FIFO" in r.text and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    p = tmp_path / "t.json"
    p.write_text("{}")
    os.chmod(p, 0o644)
    r = s.handle(f":save {p}")
    assert r.level == "info" and mode(p) == 0o644


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("old")

    def full_disk(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left"):
        atomic_write(p, full_disk)
    assert p.read_text() == "old" and names(tmp_path) == ["t.json"]


def test_several_files_move_in_each_atomically_with_the_last_one_last(tmp_path, monkeypatch):
    d = tmp_path / "tok"
    d.mkdir()
    (d / "tokenizer.json").write_text("old")

    def produce(tmp):
        for n in ("tokenizer.json", "vocab.json", "config.json"):
            (tmp / n).write_text(n)

    moved = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda a, b: (moved.append(os.path.basename(b)), real_replace(a, b))[1]
    )
    atomic_write_files(d, produce, last=("config.json",))
    assert moved[-1] == "config.json" and (d / "tokenizer.json").read_text() == "tokenizer.json"
    assert names(d) == ["config.json", "tokenizer.json", "vocab.json"]

    def produce_then_fail(tmp):
        (tmp / "tokenizer.json").write_text("trunc")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write_files(d, produce_then_fail)
    assert (d / "tokenizer.json").read_text() == "tokenizer.json"
    assert names(d) == ["config.json", "tokenizer.json", "vocab.json"]


def _fill(text):
    def fill(d):
        atomic_write_text(d / "weights", text)

    return fill


def test_a_crash_between_the_two_renames_is_recovered_with_the_newer_copy(tmp_path, monkeypatch):
    target = tmp_path / "last"
    publish_dir(target, _fill("v1"))
    real_rename = os.rename
    calls = []

    def crash_on_second(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for SIGKILL; no cleanup may matter
        real_rename(a, b)

    monkeypatch.setattr(fsutil.os, "rename", crash_on_second)
    # make the cleanup a no-op, as it would be after SIGKILL
    monkeypatch.setattr(fsutil.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        publish_dir(target, _fill("v2"))
    monkeypatch.undo()
    assert not target.exists()  # the window: both complete copies are beside it
    assert len([n for n in names(tmp_path) if n.startswith(".last.")]) == 2
    assert recover_dir(target)
    assert (target / "weights").read_text() == "v2" and names(tmp_path) == ["last"]


def test_recovery_restores_the_old_copy_when_the_new_one_is_partial(tmp_path):
    target = tmp_path / "last"
    publish_dir(target, _fill("v1"))
    os.rename(target, tmp_path / ".last.old-1234")
    partial = tmp_path / ".last.abcd1234.tmp"
    partial.mkdir()
    (partial / "weights").write_text("v2-half")  # no completeness marker
    assert recover_dir(target)
    assert (target / "weights").read_text() == "v1" and names(tmp_path) == ["last"]
    assert (target / COMPLETE_NAME).is_file()


def test_recovery_rolls_a_complete_temporary_forward_and_removes_partial_ones(tmp_path):
    target = tmp_path / "last"
    publish_dir(target, _fill("v1"))
    partial = tmp_path / ".last.0000aaaa.tmp"
    partial.mkdir()
    (partial / "weights").write_text("v2-half")
    (tmp_path / ".last.old-ffff").mkdir()
    assert recover_dir(target)
    assert (target / "weights").read_text() == "v1" and names(tmp_path) == ["last"]
    # killed after the marker of v2 was written, before its renames: v2 is committed
    done = tmp_path / ".last.1111bbbb.tmp"
    done.mkdir()
    _fill("v2")(done)
    fsutil.mark_complete(done)
    assert recover_dir(target)
    assert (target / "weights").read_text() == "v2" and names(tmp_path) == ["last"]


def _in_thread(fn, timeout=10.0):
    """fn()'s result or exception, or 'hung' if it is still running after timeout."""
    import threading

    out = []

    def run():
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001 (the caller checks which)
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return "hung" if t.is_alive() else out[0]


@pytest.mark.parametrize(
    "make,needle",
    [
        (_fifo, "FIFO"),
        (_socket, "socket"),  # opening a socket fails anyway (ENXIO)
        (_link_to_dev_null, "a device"),
        (_directory, "a directory"),
    ],
)
def test_read_regular_refuses_special_files_at_once(tmp_path, make, needle):
    p = make(tmp_path)
    got = _in_thread(lambda: fsutil.read_regular(p))
    if got == "hung":  # unblock the FIFO's reader before failing
        os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"read_regular({p}) blocked")
    assert isinstance(got, OSError), got
    assert needle in str(got) or got.errno == errno.ENXIO, str(got)
    regular = tmp_path / "r.json"
    regular.write_bytes(b"{}")
    assert fsutil.read_regular(regular) == b"{}"


def test_special_entry_names_the_first_special_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert fsutil.special_entry(tmp_path) is None
    os.mkfifo(tmp_path / "vocab.json")
    assert fsutil.special_entry(tmp_path) == ("vocab.json", "a FIFO (named pipe)")
