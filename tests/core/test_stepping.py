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
