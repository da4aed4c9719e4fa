import json
import subprocess
import sys

from repl.cli import main


def test_help_and_version_do_not_import_tensorflow():
    code = (
        "import sys; from repl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
        "assert 'tensorflow' not in sys.modules and 'transformers' not in sys.modules\n"
        "print('lazy-ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "lazy-ok" in out.stdout and "usage: gpt2" in out.stdout
    ver = subprocess.run(
        [sys.executable, "-m", "repl.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert ver.stdout.strip() == "gpt2 0.1.0"


def test_tokenize_table_json_and_decode(capsys, shared_tokenizer_dir):
    tok = ["--tokenizer", str(shared_tokenizer_dir)]
    assert main(["tokenize", *tok, "--json", "Once upon a time"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "ids": [7454, 2402, 257, 640],
        "pieces": ["Once", " upon", " a", " time"],
    }
    assert main(["tokenize", *tok, "--decode", "7454,2402,257,640"]) == 0
    assert capsys.readouterr().out == "Once upon a time\n"
    assert main(["tokenize", "Once upon a time"]) == 0  # bundled GPT-2 vocabulary, a table
    out = capsys.readouterr().out
    assert "7454" in out and "' upon'" in out


def test_tokenize_missing_tokenizer_exit_code_2(capsys, tmp_path):
    assert main(["tokenize", "--tokenizer", str(tmp_path), "x"]) == 2
    assert "no tokenizer files" in capsys.readouterr().err
