"""Where native log lines go: a file, never the terminal.

TensorFlow's and absl's C++ code (``I0000 ... cudart_stub.cc``, ``oneDNN custom
operations``, ``All log messages before absl::InitializeLog()``) writes straight to file
descriptor 2, at import and again whenever a kernel or compiler starts, whatever
TF_CPP_MIN_LOG_LEVEL says. In the app those lines scribble over the screen; on the command
line they bury the one line a user needs. Both point fd 2 at a log file while they run,
and keep Python's own stderr (our one-line errors, a bug's traceback) on the terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

NATIVE_LOG_NAME = "native.log"


def native_log_path() -> Path:
    """``native.log`` in the tool's data directory (``$GPT2_HOME`` when set)."""
    from repl.session import data_dir

    return data_dir() / NATIVE_LOG_NAME


def _writes_to_fd2(stream) -> bool:
    try:
        return stream is not None and stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # pytest's capture, a closed stream
        return False


@contextlib.contextmanager
def native_logs_to_file(path: Path | None = None) -> Iterator[None]:
    """Send fd 2 to ``path`` (appending) for the duration.

    If ``sys.stderr`` wrote to fd 2 (it does, unless something such as pytest replaced
    it), it and ``sys.__stderr__`` are pointed at a duplicate of the terminal's fd, so
    Python-level messages still reach the user (and Textual, which draws on
    ``sys.__stderr__``, still reaches the screen). If the log cannot be opened, nothing is
    redirected."""
    try:
        path = path if path is not None else native_log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        yield
        return
    try:
        tty_fd = os.dup(2)
    except OSError:  # no fd 2 (some embedded hosts): nothing to redirect
        os.close(log_fd)
        yield
        return
    swap = _writes_to_fd2(sys.stderr)
    saved = sys.__stderr__, sys.stderr
    for stream in saved:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    tty = os.fdopen(tty_fd, "w", encoding="utf-8", errors="replace") if swap else None
    os.dup2(log_fd, 2)
    if tty is not None:
        sys.__stderr__ = sys.stderr = tty
    try:
        yield
    finally:
        if tty is not None:
            tty.flush()
            os.dup2(tty.fileno(), 2)
            sys.__stderr__, sys.stderr = saved
            tty.close()
        else:
            os.dup2(tty_fd, 2)
            os.close(tty_fd)
        os.close(log_fd)


__all__ = ["native_logs_to_file", "native_log_path", "NATIVE_LOG_NAME"]
