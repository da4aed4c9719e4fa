"""`gpt2 inspect` and `:inspect`, and the Attention / Lens views fed by a real model."""

import io
import json

import numpy as np

from repl.cli import main
from repl.plain import run_plain
from repl.session import Session


def _inspect_json(spec, capsys, prompt="Once upon a time there was"):
    assert main(["inspect", "--model", spec, "--json", "--top", "4", "--", prompt]) == 0
    out, err = capsys.readouterr()
    return json.loads(out)


def test_inspect_json_agrees_between_the_two_backends(scratch_tiny_dir, capsys):
    a = _inspect_json(f"scratch:{scratch_tiny_dir}", capsys)
    b = _inspect_json(f"pretrained:{scratch_tiny_dir}", capsys)
    keys = {"model", "input_ids", "pieces", "next", "lens", "attention", "entropy_bits"}
    assert set(a) == keys | {"attention_grid", "dropped_tokens"}
    assert a["dropped_tokens"] == 0
    assert a["input_ids"] == b["input_ids"] == [7454, 2402, 257, 640, 612, 373]
    assert a["pieces"][0] == "Once" and len(a["pieces"]) == 6
    assert [i for i, _ in a["next"]] == [i for i, _ in b["next"]] and len(a["next"]) == 4
    np.testing.assert_allclose([p for _, p in a["next"]], [p for _, p in b["next"]], atol=1e-4)
    for ra, rb in zip(a["lens"], b["lens"], strict=True):
        assert [i for i, _ in ra] == [i for i, _ in rb]
        np.testing.assert_allclose([p for _, p in ra], [p for _, p in rb], atol=1e-4)
    att_a, att_b = np.array(a["attention"]), np.array(b["attention"])
    assert att_a.shape == (2, 2, 6)  # layers x heads x prompt positions
    np.testing.assert_allclose(att_a, att_b, atol=1e-4)
    assert abs(a["entropy_bits"] - b["entropy_bits"]) < 1e-3
    assert a["lens"][-1][0][0] == a["next"][0][0]  # the last lens row is the model's own
    # every position's weights (a 6-token prompt is under GRID_MAX), the same from both
    grid_a, grid_b = np.array(a["attention_grid"]), np.array(b["attention_grid"])
    assert grid_a.shape == (2, 2, 6, 6)  # layers x heads x queries x keys
    np.testing.assert_allclose(grid_a, grid_b, atol=1e-4)
    np.testing.assert_allclose(grid_a[:, :, -1], att_a, atol=1e-6)  # its last row
    np.testing.assert_allclose(grid_a.sum(axis=-1), 1.0, atol=1e-4)  # each row a softmax
    assert np.all(np.triu(grid_a, k=1) == 0)  # no query sees a later key


def test_inspect_grid_text_and_its_limit(scratch_tiny_dir, capsys):
    from gpt2core.generate import GRID_MAX

    spec = f"scratch:{scratch_tiny_dir}"
    assert main(["inspect", "--model", spec, "--", "Once upon a time there was"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    for layer in (1, 2):  # the first and the last of the tiny model's 2 layers
        title = next(i for i, x in enumerate(lines) if f"every position, layer {layer} " in x)
        rows = lines[title + 2 : title + 8]  # after the key header: one row per position
        assert [r[:3].strip() for r in rows] == ["0", "1", "2", "3", "4", "5"]
        assert rows[0][4:12].strip() == "Once" and rows[1][4:12].strip() == "␣upon"
        for q, row in enumerate(rows):  # q + 1 shaded cells, then 5 - q masked ones
            cells = row[13:].ljust(12)[::2]
            assert cells[q + 1 :].rstrip() == "·" * (5 - q)
            assert "·" not in cells[: q + 1] and cells[: q + 1].strip()  # the strongest: █
    long = " ".join(["word"] * (GRID_MAX + 4))
    assert len(_inspect_json(spec, capsys, long)["input_ids"]) > GRID_MAX
    assert _inspect_json(spec, capsys, long)["attention_grid"] is None
    assert main(["inspect", "--model", spec, "--", long]) == 0
    assert "every position" not in capsys.readouterr()[0]


def test_inspect_json_says_how_many_tokens_were_cut(scratch_tiny_dir, capsys):
    # 200 tokens into a 128-token context: the text report says the prompt was cut; so
    # does the JSON (as generate --json's dropped_tokens)
    d = _inspect_json(f"scratch:{scratch_tiny_dir}", capsys, " ".join(["word"] * 200))
    assert d["dropped_tokens"] == 200 - len(d["input_ids"]) > 0


def test_grid_row_labels_keep_the_grid_aligned():
    # a tab (which safe keeps) or a wide character in a piece shifted its row's cells
    from rich.cells import cell_len

    from repl.attention_grid import grid_rows

    pieces = ["a", "\t", "中文字符號", "x\ty", "😀"]
    g = np.tril(np.ones((5, 5)))  # (T, T)
    rows = grid_rows(g, pieces, 8, 2)
    assert [cell_len(r.label) for r in rows] == [9] * 5  # 8 cells and a space
    assert all("\t" not in r.label for r in rows)
    assert rows[1].label.startswith("\\t") and rows[3].label.startswith("x\\ty")
    assert rows[2].label == "中文字符 "


def test_inspect_text_shows_a_control_as_tokenize_does(scratch_tiny_dir, capsys):
    # repr after safe doubled the backslash: ESC read '\\x1b', as a literal backslash would
    assert main(["inspect", "--model", f"scratch:{scratch_tiny_dir}", "--", "a\x1bb"]) == 0
    out, _ = capsys.readouterr()
    row = next(x for x in out.splitlines() if x.split()[1:2] == ["215"])  # ESC's token
    assert row.split()[2] == "'\\x1b'"
    assert "\\\\x1b" not in out and "\x1b" not in out


def test_inspect_text_and_its_errors(scratch_tiny_dir, capsys):
    assert main(["inspect", "--model", f"scratch:{scratch_tiny_dir}", "--", "hello"]) == 0
    out, _ = capsys.readouterr()
    assert "logit lens" in out and "layer  2" in out and "entropy" in out
    assert main(["inspect", "--model", f"scratch:{scratch_tiny_dir}", "--top", "0", "x"]) == 2
    _, err = capsys.readouterr()
    assert err.strip() == "gpt2: --top must be from 1 to 10, got 0"


class Piped(io.StringIO):
    def isatty(self):
        return False


def test_line_mode_inspect_on_a_prompt_and_on_the_last_turn(scratch_tiny_dir, capsys):
    session = Session(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    script = [
        ":inspect",
        ":inspect Once upon",
        ":set max_new_tokens=3 greedy=true",
        "hi",
        ":inspect",
    ]
    assert run_plain(session=session, stdin=Piped("\n".join(script) + "\n")) == 0
    out, err = capsys.readouterr()
    assert "error: nothing to inspect yet" in err
    assert out.count("logit lens") == 2 and out.count("attention of the last position") == 2
    assert "prompt: 2 tokens" in out  # "Once upon"
    assert "prompt: 4 tokens" in out  # "hi" + 3 new tokens, as the model saw it
