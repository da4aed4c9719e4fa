"""Step mode's core: accept, force, undo, branches, on a real tiny model; the KV cache
after an undo gives the same logits as a fresh prefill."""

import numpy as np
import pytest

from gpt2core.sampling import Settings
from gpt2core.stepping import StepError, Stepper


@pytest.fixture(scope="module", params=["scratch", "pretrained"])
def lm(request, scratch_tiny_dir):
    from gpt2core.specs import load_lm

    return load_lm(f"{request.param}:{scratch_tiny_dir}")


PROMPT = "Once upon a time"


def test_accepting_every_proposal_equals_a_plain_generation_even_after_undos(lm):
    s = Settings(max_new_tokens=8, temperature=1.3, top_k=0, seed=11, stop_at_eos=False)
    plain = lm.generate(PROMPT, s).output_ids
    st = Stepper(lm, PROMPT, s)
    for n in range(8):
        st.accept()
        if n in (2, 5):  # step back twice, then on
            st.undo()
            st.undo()
            st.accept()
            st.accept()
    assert st.output_ids == plain
    assert st.branches == []  # walking the same path again makes no branch
    assert all(not r.forced and r.prob > 0 and r.rank >= 1 for r in st.tokens)


def test_after_an_undo_the_cache_gives_the_logits_of_a_fresh_prefill(lm):
    s = Settings(greedy=True, stop_at_eos=False)
    st = Stepper(lm, PROMPT, s)
    for k in (2, 3, 1, 4):
        st.force(k)
    st.undo()
    st.undo()
    st.force(5)  # new rows written over the undone ones
    fresh = Stepper(lm, lm.tokenizer.decode(st.output_ids), s)
    np.testing.assert_allclose(st._stack[-1].logits, fresh._stack[-1].logits, atol=1e-5)


def test_force_records_and_branches(lm):
    s = Settings(greedy=True, stop_at_eos=False)
    st = Stepper(lm, PROMPT, s)
    c2 = st.proposal.candidates[1].token_id
    st.force(2)
    b = st.accept()
    st.undo()
    c3 = st.proposal.candidates[2].token_id
    st.force(3)
    ids = st.output_ids
    assert len(ids) == 6 and ids[4] == c2 and ids[5] == c3
    assert [r.forced for r in st.tokens] == [True, True]
    assert [r.rank for r in st.tokens] == [2, 3]
    assert len(st.branches) == 1 and [r.token_id for r in st.branches[0].tokens] == [c2, b.token_id]
    st.switch(1)  # back to the accepted path; the forced one becomes a branch
    assert st.output_ids[-1] == b.token_id and len(st.branches) == 1
    assert st.branches[0].tokens[-1].token_id == c3
    with pytest.raises(StepError):
        st.force(99)
    st2 = Stepper(lm, PROMPT, s)
    with pytest.raises(StepError):
        st2.undo()
    summary = st.finish()
    assert summary.output_ids == st.output_ids and summary.new_tokens == 2


def _foreign_writes(lm):
    """What may run on the model between two key presses of a step turn, each writing
    over the turn's cache rows: the app's background compile of a shape (scratch), and an
    :inspect of another prompt (a whole generation of its own)."""
    from gpt2core.inspect import inspect

    if lm.background_shapes():
        yield lambda: lm.compile_shape(lm.background_shapes()[0])  # a shape not compiled yet
    yield lambda: inspect(lm, "A completely different prompt about ships and the sea")


def test_what_runs_between_key_presses_never_changes_the_turn(lm):
    """A hostile probe's find: a step turn opened while the app was compiling shapes in
    the background went on from a cache the compile had reset (' t he the th' instead of
    ' the the the'), and an :inspect typed mid-turn changed the probabilities shown."""
    s = Settings(max_new_tokens=12, temperature=1.3, top_k=0, seed=5, stop_at_eos=False)
    quiet = Stepper(lm, PROMPT, s)
    for _ in range(6):
        quiet.accept()
    quiet.undo()
    quiet.accept()
    for foreign in _foreign_writes(lm):

        def write(foreign=foreign):
            before = lm.cache_writes
            foreign()
            assert lm.cache_writes > before  # it did write over the turn's rows

        st = Stepper(lm, PROMPT, s)
        write()  # before the first step
        st.accept()
        st.accept()
        write()  # between steps
        st.accept()
        st.accept()
        st.accept()
        st.accept()
        write()  # before an undo
        st.undo()
        st.accept()
        assert st.output_ids == quiet.output_ids
        np.testing.assert_allclose(
            [r.prob for r in st.tokens], [r.prob for r in quiet.tokens], rtol=1e-4
        )
        np.testing.assert_allclose(st._stack[-1].logits, quiet._stack[-1].logits, atol=1e-4)


def test_a_compile_with_nothing_to_do_leaves_a_turn_alone(lm):
    """The scratch decoder's compile() reset the write index even when every shape was
    compiled already, so a turn went on writing at row 0 without anything noticing."""
    s = Settings(greedy=True, stop_at_eos=False)
    st = Stepper(lm, PROMPT, s)
    st.accept()
    writes = lm.cache_writes
    lm.compile_for(PROMPT, Settings(max_new_tokens=4))  # compiled already by the turn
    if lm.kind == "scratch":  # (transformers' backend warms up again: a write, noticed)
        assert lm.cache_writes == writes
    st.accept()
    fresh = Stepper(lm, lm.tokenizer.decode(st.output_ids), s)
    np.testing.assert_allclose(st._stack[-1].logits, fresh._stack[-1].logits, atol=1e-5)
