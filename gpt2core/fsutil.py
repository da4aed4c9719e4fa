"""The one writer of every file and directory the tool creates.

Why each rule:

- Write to a temporary sibling, fsync, then one ``rename``: an interrupted save (Ctrl-C,
  SIGKILL, a full disk, a power cut) leaves the old file or the new one, never half of one.
  Siblings share a filesystem, so the rename is atomic.
- New files and directories get the modes the umask gives (typically 0644 and 0755): a
  shared checkpoint should be readable by the people it is shared with. (``mkstemp`` and
  ``mkdtemp`` create 0600/0700, so they are not used.) A file that is replaced keeps its
  mode.
- Only regular files are replaced. A FIFO, socket or device at the path is refused (as
  root, ``:save /dev/null`` must not replace /dev/null), as is a directory. A symlink to a
  regular file is written *through*: the link stays and its target is replaced
  atomically, as editors do when they save a linked file. A link to anything else, or to
  nothing, is refused.
- Directories are published whole (``publish_dir``): filled in a temporary sibling, marked
  complete by a marker file written last, fsynced, and put in place by renames that never
  leave the target missing while a complete copy exists; ``recover_dir`` finishes or
  cleans up after a crash at any point of that.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from gpt2core.errors import UserError

# Written last inside a directory being published: a directory without it is partial.
COMPLETE_NAME = ".complete"
_TMP_SUFFIX = ".tmp"


class UnsafeTargetError(UserError, OSError):
    """The path names something that is not a regular file (a FIFO, device, socket,
    directory, or a link to one): we refuse rather than replace it. Also an OSError, so
    callers that catch write failures catch this too."""


# -- files ------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_regular(path: str | os.PathLike, pipes: bool = False) -> bytes:
    """The bytes of the regular file at ``path`` (links followed). Anything else raises
    OSError at once, with the kind as its strerror ("a FIFO (named pipe)"): opening a
    FIFO to read waits for a writer, forever if none comes, so it is opened without
    blocking and looked at before a byte is read.

    ``pipes=True`` also reads a pipe (``/dev/stdin`` fed by ``cat``, a shell's ``<(...)``):
    opened without blocking, a pipe with no writer reads as empty at once, and one with a
    writer reads until the writer closes it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode))):
            what = _kind(mode)
            why = "not a regular file" if what == "not a regular file" else f"is {what}"
            raise OSError(errno.EINVAL, why, str(path))
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def special_entry(directory: str | os.PathLike) -> tuple[str, str] | None:
    """The first entry of ``directory`` (not recursing) that is neither a regular file nor
    a directory once links are followed, as (name, kind), or None. Libraries that read a
    checkpoint (transformers, tokenizers) open whichever of its files they look for, and a
    FIFO among them blocks that open forever: a directory is checked once, up front."""
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                mode = os.stat(entry.path).st_mode
            except OSError:  # a dangling link, a loop, no permission: the reader says so
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                return entry.name, _kind(mode)
    return None


def writable_target(path: str | os.PathLike) -> tuple[Path, int | None]:
    """The regular file to replace for ``path`` and its current mode (None if new).

    Follows a symlink to a regular file; refuses special files, directories, and links to
    them or to nothing, with one line (``UnsafeTargetError``)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path, None
    if stat.S_ISLNK(st.st_mode):
        real = Path(os.path.realpath(path))
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise UnsafeTargetError(
                f"{path}: is a symlink to {real}, which does not exist; not writing through it"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeTargetError(
                f"{path}: is a symlink to {real}, which is {_kind(st.st_mode)}; "
                f"only regular files are written"
            )
        return real, stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeTargetError(f"{path}: is {_kind(st.st_mode)}; only regular files are written")
    return path, stat.S_IMODE(st.st_mode)


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")


def is_temp_of(name: str, target_name: str) -> bool:
    """Whether ``name`` is one of our temporaries for a file or directory ``target_name``."""
    return name.startswith(f".{target_name}.") and name.endswith(_TMP_SUFFIX)


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make renames and new names in ``path`` durable."""
    try:
        _fsync_path(path, directory=True)
    except OSError as e:  # some filesystems cannot fsync a directory; the rename stands
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a new temporary sibling, fsync it, rename it over ``path``.

    The temporary file is created (empty) with the umask's mode, or with the mode of the
    file it replaces; ``write`` may reopen or truncate it."""
    target, mode = writable_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(target)
        try:
            # 0o666 minus the umask, applied by the kernel (no process-wide umask dance)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        write(str(tmp))
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:  # the writer made its own file
            os.chmod(tmp, mode)  # (safetensors creates 0600 files)
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log file (metrics). Not atomic: a reader must skip a torn last
    line; ``rewrite_lines`` repairs one. Refuses special files like ``atomic_write``."""
    target, _ = writable_target(path)
    with open(target, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")


def atomic_write_files(
    directory: str | os.PathLike, produce: Callable[[Path], None], last: tuple[str, ...] = ()
) -> list[str]:
    """Let ``produce(tmpdir)`` write several files (e.g. a library's ``save_pretrained``)
    into a temporary sibling, then move each into ``directory`` by its own rename, the
    names in ``last`` after the others (a file whose presence says the set is complete).

    Each file is atomic on its own and keeps the mode of the file it replaces; special
    files and links to them are refused before anything is moved."""
    directory = make_dir(directory)
    tmp = temp_dir_for(directory / "staging")
    try:
        produce(tmp)
        names = sorted(p.name for p in tmp.iterdir())
        for name in names:
            if not (tmp / name).is_file() or (tmp / name).is_symlink():
                raise RuntimeError(f"{tmp / name}: expected a regular file")
        targets = {name: writable_target(directory / name) for name in names}
        names.sort(key=lambda n: (n in last, last.index(n) if n in last else 0))
        new_mode = stat.S_IMODE(os.stat(tmp).st_mode) & 0o666  # the umask's, for a new file
        for name in names:
            target, mode = targets[name]
            _fsync_path(tmp / name)
            os.chmod(tmp / name, new_mode if mode is None else mode)
            os.replace(tmp / name, target)
        fsync_dir(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return names


# -- directories ------------------------------------------------------------------------


def make_dir(path: str | os.PathLike) -> Path:
    """``mkdir -p`` with the umask's mode; refuses a path that exists and is not a dir."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UnsafeTargetError(f"{path}: exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def temp_dir_for(target: str | os.PathLike) -> Path:
    """A new empty directory beside ``target`` (``.NAME.XXXX.tmp``), with the umask's mode."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(target)
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:
            continue


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            _fsync_path(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_NAME).is_file()


def mark_complete(directory: Path) -> None:
    """fsync everything in ``directory``, then write its completeness marker, last."""
    _fsync_tree(directory)
    fd = os.open(directory / COMPLETE_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(directory)


def replace_dir(new: Path, target: Path) -> None:
    """Put complete directory ``new`` at ``target``, replacing any directory there.

    Two renames (a directory cannot be renamed over a non-empty one): ``target`` aside to
    ``.NAME.old-XXXX``, then ``new`` in. A crash between them leaves ``target`` missing but
    both complete copies on disk; ``recover_dir`` puts the newer one in place."""
    new, target = Path(new), Path(target)
    if not is_complete(new):
        raise RuntimeError(f"{new}: not marked complete; publish with publish_dir")
    old = None
    if os.path.lexists(target):
        if target.is_symlink() or not target.is_dir():
            raise UnsafeTargetError(f"{target}: exists and is not a directory")
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        os.rename(target, old)
    os.rename(new, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def publish_dir(target: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling with ``fill(tmp)``, mark it complete, put it at ``target``.

    At every instant ``target`` is absent, the old complete directory, or the new complete
    one (given ``recover_dir`` after a crash between the two renames)."""
    target = Path(target)
    recover_dir(target)
    tmp = temp_dir_for(target)
    try:
        fill(tmp)
        mark_complete(tmp)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def remove_dir(path: str | os.PathLike) -> None:
    """Remove a directory without a moment where it is there but half-deleted: its
    completeness marker goes first, then it is renamed aside and deleted there."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return
    (path / COMPLETE_NAME).unlink(missing_ok=True)
    aside = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _debris(target: Path) -> tuple[list[Path], list[Path]]:
    """(temporaries, set-aside old copies) left beside ``target`` by interrupted writes."""
    parent, name = target.parent, target.name
    if not parent.is_dir():
        return [], []
    tmps, olds = [], []
    for p in parent.iterdir():
        if p.name.startswith(f".{name}.old-"):
            olds.append(p)
        elif is_temp_of(p.name, name):
            tmps.append(p)
    return tmps, olds


def recover_dir(target: str | os.PathLike, restore: bool = True) -> bool:
    """Finish or undo an interrupted ``publish_dir`` of ``target``; True if it exists after.

    A publish commits when its completeness marker is written: a complete temporary is the
    newest state (``publish_dir`` clears older debris before it starts one), so it is put
    in place, replacing ``target`` if need be. Failing that, a missing ``target`` gets
    back its complete set-aside old copy. Everything else beside it is removed (all of it
    when ``restore`` is False: a staging area, never a target of its own)."""
    target = Path(target)
    tmps, olds = _debris(target)
    if restore:
        done = [p for p in tmps if p.is_dir() and not p.is_symlink() and is_complete(p)]
        kept = [p for p in olds if p.is_dir() and not p.is_symlink() and is_complete(p)]
        if done:
            newest = max(done, key=_mtime)
            replace_dir(newest, target)
            tmps.remove(newest)
        elif kept and not os.path.lexists(target):
            newest = max(kept, key=_mtime)
            os.rename(newest, target)
            fsync_dir(target.parent)
            olds.remove(newest)
    for p in tmps + olds:
        if not os.path.lexists(p):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return target.is_dir()


def _mtime(p: Path) -> float:
    try:
        return (p / COMPLETE_NAME).stat().st_mtime
    except OSError:
        return 0.0


def clean_temp_files(directory: str | os.PathLike) -> None:
    """Remove ``.NAME.XXXX.tmp`` files left in ``directory`` by interrupted ``atomic_write``s
    (only regular files whose name has our pattern)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        if (
            p.name.startswith(".")
            and p.name.endswith(_TMP_SUFFIX)
            and p.is_file()
            and not p.is_symlink()
        ):
            p.unlink(missing_ok=True)


__all__ = [
    "COMPLETE_NAME",
    "UnsafeTargetError",
    "append_line",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_files",
    "atomic_write_text",
    "clean_temp_files",
    "fsync_dir",
    "is_complete",
    "is_temp_of",
    "make_dir",
    "mark_complete",
    "publish_dir",
    "recover_dir",
    "remove_dir",
    "replace_dir",
    "temp_dir_for",
]
