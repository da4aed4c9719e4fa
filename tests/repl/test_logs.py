"""Native (fd 2) log lines go to the log file; Python's stderr keeps the terminal."""

import os
import sys

from repl.logs import native_logs_to_file


def test_native_lines_go_to_the_file_python_lines_do_not(tmp_path, capfd):
    log = tmp_path / "logs" / "native.log"
    with native_logs_to_file(log):
        os.write(2, b"I0000 00:00:1.0 cudart_stub.cc:31] native\n")  # as TensorFlow's C++ does
        print("gpt2: a one-line error", file=sys.stderr)
    os.write(2, b"after\n")  # fd 2 is the terminal again
    err = capfd.readouterr().err
    assert "gpt2: a one-line error" in err and "after" in err
    assert "cudart_stub" not in err
    assert "cudart_stub.cc:31] native" in log.read_text()


def test_unwritable_log_redirects_nothing(tmp_path, capfd):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with native_logs_to_file(blocker / "native.log"):  # parent is a file: cannot open
        os.write(2, b"still shown\n")
    assert "still shown" in capfd.readouterr().err
