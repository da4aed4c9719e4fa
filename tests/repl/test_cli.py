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


def test_every_user_setting_has_its_sampling_flag_parsed_like_set(capsys):
    """The sampling flags come from Settings' declaration: each user setting has one, it
    reaches the settings, and a bad value is :set's one-line error (exit 2)."""
    from gpt2core.sampling import USER_SETTINGS, Settings, SettingsError
    from repl.cli import _settings_from, build_parser

    parser, defaults = build_parser(), Settings()
    for name in USER_SETTINGS:
        flag, default = "--" + name.replace("_", "-"), getattr(defaults, name)
        if isinstance(default, bool):
            args = parser.parse_args(["generate", flag, "p"])
        else:
            value = "0.5" if isinstance(default, float) else str((default or 6) + 1)
            args = parser.parse_args(["generate", flag, value, "p"])
        changed = _settings_from(args)
        assert getattr(changed, name) != default, name
        others = [k for k in USER_SETTINGS if k != name]
        assert [getattr(changed, k) for k in others] == [getattr(defaults, k) for k in others]
        if not isinstance(default, bool):
            bad = parser.parse_args(["generate", flag, "3x", "p"])
            try:
                _settings_from(bad)
            except SettingsError as e:
                assert str(e).startswith(f"{name}='3x' is invalid: {name} must be ")
            else:
                raise AssertionError(f"{flag} 3x was accepted")
    assert main(["generate", "--top-p", "2", "--model", "scratch", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "gpt2: top_p=2.0 is invalid: top_p must be a number in (0, 1]"
    )


def test_decode_errors_are_one_short_line(capsys, shared_tokenizer_dir):
    """Bad ids are one line that quotes at most 40 characters of what was typed, however
    long the input (a 5000-digit id is not a valid int string; a 4000-digit one is no id)."""
    tok = ["--tokenizer", str(shared_tokenizer_dir)]
    for ids, needle in [
        ("1,x,3", "--decode takes comma-separated token ids, got '1,x,3'"),
        ("7" * 5000, "--decode takes comma-separated token ids, got '" + "7" * 40 + "...'"),
        ("7" * 4000, "token id " + "7" * 40 + "... is outside the vocabulary (0..50256)"),
        ("50257", "token id 50257 is outside the vocabulary (0..50256)"),
    ]:
        assert main(["tokenize", *tok, "--decode", ids]) == 2
        err = capsys.readouterr().err
        assert err == f"gpt2: {needle}\n", err[:200]


def test_chat_flags_work_without_the_word_chat(monkeypatch):
    """chat is the default command: `gpt2 --plain --model X` is `gpt2 chat --plain --model X`
    (it was 'invalid choice')."""
    from repl import cli

    seen = []
    monkeypatch.setattr(cli, "cmd_chat", lambda args: seen.append(args) or 0)  # parser's func
    assert cli.main(["--model", "scratch", "--plain"]) == 0
    assert cli.main(["chat", "--model", "scratch:x"]) == 0
    assert [(a.model, a.plain) for a in seen] == [("scratch", True), ("scratch:x", True)]
