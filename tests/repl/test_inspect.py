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
    assert set(a) == {"model", "input_ids", "pieces", "next", "lens", "attention", "entropy_bits"}
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
