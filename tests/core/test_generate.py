"""Streaming generation: parity with HF generate, sampling, cancel, context, UTF-8, traces."""

import threading

import pytest

from gpt2core.generate import GenerationSummary, PromptEvent, TokenEvent, prompt_budget
from gpt2core.sampling import Settings, SettingsError

GREEDY = Settings(greedy=True, max_new_tokens=24, stop_at_eos=False)


def _events(lm, prompt, settings, **kw):
    events = list(lm.stream(prompt, settings, **kw))
    assert isinstance(events[0], PromptEvent)
    events = events[1:]
    assert all(isinstance(e, TokenEvent) for e in events[:-1])
    assert isinstance(events[-1], GenerationSummary)
    return events[:-1], events[-1]


def test_both_backends_match_transformers_generate(scratch_lm, pretrained_lm):
    import tensorflow as tf

    prompt = "The meaning of life is"
    ids = scratch_lm.encode(prompt)
    ref = (
        pretrained_lm.model.generate(
            tf.constant([ids]),
            max_new_tokens=24,
            do_sample=False,
            pad_token_id=50256,
            eos_token_id=None,
        )
        .numpy()[0]
        .tolist()
    )
    assert scratch_lm.generate(prompt, GREEDY).output_ids == ref
    assert pretrained_lm.generate(prompt, GREEDY).output_ids == ref


def test_events_and_summary(scratch_lm):
    tokens, summary = _events(scratch_lm, "Once upon a time", Settings(max_new_tokens=10, seed=3))
    assert summary.input_ids == [7454, 2402, 257, 640]
    assert summary.output_ids == summary.input_ids + [t.token_id for t in tokens]
    assert summary.new_tokens == 10 and summary.stop_reason == "max_new_tokens"
    assert summary.text == "".join(t.text for t in tokens)
    assert summary.ttft_s > 0 and summary.tokens_per_s > 0
    for t in tokens:
        assert len(t.candidates) >= 5 and sum(c.chosen for c in t.candidates) == 1
        probs = [c.prob for c in t.candidates[:5]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
        assert [c.token_id for c in t.candidates if c.chosen] == [t.token_id]


def test_seeded_sampling_reproduces(scratch_lm, pretrained_lm):
    s = Settings(
        max_new_tokens=20, temperature=1.3, top_k=0, top_p=0.95, seed=7, repetition_penalty=1.2
    )
    for lm in (scratch_lm, pretrained_lm):
        a = lm.generate("Hello", s).output_ids
        assert lm.generate("Hello", s).output_ids == a
        assert lm.generate("Hello", s.updated(seed=8)).output_ids != a


def test_top_k_one_is_greedy(scratch_lm):
    s = Settings(max_new_tokens=12, top_k=1, seed=1, stop_at_eos=False)
    assert (
        scratch_lm.generate("abc", s).output_ids
        == scratch_lm.generate("abc", GREEDY.updated(max_new_tokens=12)).output_ids
    )


def test_cancel_from_another_thread_stops_within_one_token(scratch_lm):
    cancel = threading.Event()
    seen = []
    for event in scratch_lm.stream("x", Settings(max_new_tokens=100, seed=0), cancel=cancel):
        if isinstance(event, TokenEvent):
            seen.append(event)
            if len(seen) == 3:  # another thread cancels (joined: deterministic under load)
                t = threading.Thread(target=cancel.set)
                t.start()
                t.join()
        else:
            summary = event
    assert summary.stop_reason == "cancelled"
    assert summary.new_tokens == len(seen) == 3


def test_long_prompt_is_cut_from_the_left_and_long_generation_slides(scratch_lm, pretrained_lm):
    prompt = " ".join(f"w{i}" for i in range(2500))  # about 5,000 tokens
    n_ids = len(scratch_lm.encode(prompt))
    assert n_ids >= 5000
    s = Settings(max_new_tokens=200, greedy=True, stop_at_eos=False)  # > the 128 window
    for lm in (scratch_lm, pretrained_lm):
        summary = lm.generate(prompt, s)
        keep = prompt_budget(128, 200)
        assert summary.dropped_tokens == n_ids - keep and summary.prompt_tokens == keep
        assert summary.new_tokens == 200 and summary.stop_reason == "max_new_tokens"
    stopped = scratch_lm.generate(prompt, s, slide=False)
    assert stopped.stop_reason == "context" and stopped.new_tokens < 200


def test_streamed_text_is_utf8_safe(gpt2_tokenizer):
    text = "한국어 텍스트와 이모지 🙂👍🏽 끝"
    from tests.repl.fakes import FakeLM

    script = gpt2_tokenizer.encode(text) + [50256]
    lm = FakeLM("scripted", tokenizer=gpt2_tokenizer, ids=script, n_positions=64)
    tokens, summary = _events(lm, "a", Settings(greedy=True, max_new_tokens=100))
    assert summary.stop_reason == "eos" and summary.output_ids[-1] == 50256
    assert summary.text == text == "".join(t.text for t in tokens)
    assert all("\ufffd" not in t.text for t in tokens)
    assert any(t.text == "" for t in tokens[:-1])  # a character was held back


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("temperature", "-1", "temperature must be a number >= 0"),
        ("top_p", "0", "top_p must be a number in (0, 1]"),
        ("top_p", "1.5", "top_p must be a number in (0, 1]"),
        ("top_k", "-3", "top_k must be an integer >= 0"),
        ("max_new_tokens", "0", "max_new_tokens must be an integer from 1 to 100000"),
        ("max_new_tokens", "99999999999", "max_new_tokens must be an integer from 1 to 100000"),
        ("temperature", "hot", "temperature must be"),
        ("top_k", "2.5", "top_k must be an integer"),
        ("repetition_penalty", "nan", "repetition_penalty must be"),
        ("greedy", "maybe", "greedy must be true or false"),
        ("colour", "red", "unknown setting 'colour'"),
    ],
)
def test_invalid_settings_are_named(key, value, needle):
    with pytest.raises(SettingsError) as e:
        Settings().parsed({key: value})
    assert needle in str(e.value)


def test_no_retracing_after_warmup(scratch_tiny_dir):
    from gpt2core.specs import load_lm

    lm = load_lm(f"scratch:{scratch_tiny_dir}")
    lm.generate("warm up", GREEDY.updated(max_new_tokens=3))
    traces = lm.decoder.traces
    assert traces == 1  # one function for the prefill and the steps
    for n in (1, 5, 17, 40, 90):  # prompt lengths across several buckets
        lm.generate(" hi" * n, GREEDY.updated(max_new_tokens=30))
    assert lm.decoder.traces == traces


def test_generate_json_cli(scratch_tiny_dir, capsys):
    import json

    from repl.cli import main

    rc = main(
        [
            "generate",
            "--model",
            f"scratch:{scratch_tiny_dir}",
            "--max-new-tokens",
            "5",
            "--greedy",
            "--json",
            "Once upon a time",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["input_ids"] == [7454, 2402, 257, 640]
    assert len(out["output_ids"]) == 9 and out["output_ids"][:4] == out["input_ids"]
    assert out["stop_reason"] == "max_new_tokens" and out["model"].startswith("scratch:")
    assert set(out) >= {
        "model",
        "input_ids",
        "output_ids",
        "text",
        "stop_reason",
        "ttft_s",
        "tokens_per_s",
    }


def test_generate_cli_teaching_view(scratch_tiny_dir, capsys):
    from repl.cli import main

    assert (
        main(
            [
                "generate",
                "--model",
                f"scratch:{scratch_tiny_dir}",
                "--max-new-tokens",
                "3",
                "--seed",
                "1",
                "Once upon a time",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "input_ids: tf.Tensor([[7454 2402  257  640]], shape=(1, 4), dtype=int32)" in out
    assert "shape=(1, 7), dtype=int32)" in out and "generated_text:" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["generate", "--model", "nope", "x"], "unknown model 'nope'"),
        (["generate", "--model", "scratch:/no/such/dir", "x"], "no such checkpoint directory"),
        (["generate", "--top-p", "2", "x"], "top_p"),
        (["tokenize", "--tokenizer", "/no/such", "x"], "no such checkpoint directory"),
        (["tokenize", "--decode", "1,x"], "--decode takes"),
    ],
)
def test_cli_user_errors_are_one_line(argv, needle, capsys):
    from repl.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_one_model_is_driven_by_one_thread_at_a_time():
    """Warm-up (in a load worker) and a generation must not share the KV cache at once."""
    from tests.repl.fakes import FakeLM

    lm = FakeLM("scratch")
    done = threading.Event()

    def run():
        lm.generate("a", Settings(max_new_tokens=3))
        done.set()

    with lm.busy:  # what warmup() holds
        worker = threading.Thread(target=run)
        worker.start()
        assert not done.wait(0.3)  # the generation waits for the lock
    worker.join(10)
    assert done.is_set()
