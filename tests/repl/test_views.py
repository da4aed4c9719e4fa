"""The side panel's views: switching, each view's content from the same turn state, a
hidden view or panel doing no work, the probes asked of the model."""

from repl.app import make_app
from repl.widgets import SidePanel
from repl.widgets.views import VIEWS, AttentionView, LensView, NextTokenView, TokensView
from tests.repl.fakes import FakeLoader
from tests.repl.test_app import SIZE, settle, submit, text_of


async def test_f3_cycles_the_views_and_each_shows_the_turn():
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set max_new_tokens=5 greedy=true")
        await submit(pilot, "hi")
        await settle(app, pilot)
        panel = app.query_one(SidePanel)
        titles = []
        for _ in VIEWS:
            titles.append(panel.border_title)
            text = text_of(panel.view)
            if isinstance(panel.view, TokensView):
                assert "h" in text and "8" in text and "reply" in text  # pieces with ids
            if isinstance(panel.view, NextTokenView):
                assert "◀" in text and "step 4" in text
            if isinstance(panel.view, AttentionView | LensView):
                assert "shows here" in text  # the fake model gives no probes: it says so
            await pilot.press("f3")
        assert titles == [v.title for v in VIEWS]
        assert panel.border_title == VIEWS[0].title  # and round again


async def test_a_hidden_view_does_no_work_and_catches_up_when_shown():
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        panel = app.query_one(SidePanel)
        tokens_view = panel.query_one(TokensView)
        drawn_before = tokens_view.drawn
        await submit(pilot, ":set max_new_tokens=30 greedy=true")
        await submit(pilot, "abc")
        await settle(app, pilot)
        assert tokens_view.drawn == drawn_before  # never drawn while hidden
        await pilot.press("f3")  # Tensors -> Tokens
        assert panel.view is tokens_view and tokens_view.drawn == panel.state.version
        assert "reply" in text_of(tokens_view)


async def test_probes_asked_for_follow_the_view_on_show():
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        panel = app.query_one(SidePanel)
        seen = {}
        for _ in VIEWS:
            seen[panel.view.title] = panel.wanted_probes
            await pilot.press("f3")
        assert seen["Tensors"] == frozenset() and seen["Tokens"] == frozenset()
        assert seen["Attention"] == {"attention", "attention_grid"} and seen["Lens"] == {"lens"}
        await pilot.press("f2")  # panel hidden: nothing is asked for, whatever the view
        for _ in VIEWS:
            assert panel.wanted_probes == frozenset()
            panel.show_view(panel.current + 1)


async def test_views_fit_an_80x24_terminal():
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set max_new_tokens=20 greedy=true")
        await submit(pilot, "once upon a time")
        await settle(app, pilot)
        panel = app.query_one(SidePanel)
        for _ in VIEWS:
            assert panel.region.width >= 30 and panel.region.height >= 10
            assert text_of(panel.view).strip()
            await pilot.press("f3")


async def test_layer_and_head_keys_work_only_in_the_attention_view():
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        panel = app.query_one(SidePanel)
        attention = panel.query_one(AttentionView)
        await pilot.press("f6")  # Tensors on show: nothing happens
        assert attention.layer == 0 and not app.check_action("layer", (1,))
        while not isinstance(panel.view, AttentionView):
            await pilot.press("f3")
        assert app.check_action("layer", (1,))
        await pilot.press("f6", "f6", "f5", "f8", "f8")
        assert attention.layer == 1 and attention.head == 1
        await pilot.press("f7", "f7", "f7")
        assert attention.head == -1  # the average of the heads, and no lower


def _grid_rows(text: str) -> list[tuple[int, str, str]]:
    """The grid's rows as (position, piece, one character per key)."""
    lines = text.splitlines()
    if AttentionView.GRID_INTRO not in lines:
        return []
    start = lines.index(AttentionView.GRID_INTRO) + 1
    cell = 2 if lines[start][11:].startswith("0 1") else 1  # the key header: 2 or 1 wide
    rows = []
    for line in lines[start + 1 :]:
        if not line[:3].strip().isdigit():
            break
        rows.append((int(line[:3]), line[4:10].strip(), line[11:].ljust(99)[::cell].rstrip()))
    return rows


async def _attention_after(pilot, app, prompt, n, keys=()):
    panel = app.query_one(SidePanel)
    while not isinstance(panel.view, AttentionView):
        await pilot.press("f3")
    await submit(pilot, f":set max_new_tokens={n} greedy=true")
    await submit(pilot, prompt)
    await settle(app, pilot)
    await pilot.press(*keys)
    return text_of(panel.view)


async def test_attention_grid_for_a_short_context():
    """A 2-token prompt and 6 new tokens: the last step saw 7 tokens, so a 7 x 7 grid, one
    row per context token labelled with its piece, the keys after each query masked, and
    the chosen head's favourite key strongest in every row."""
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        text = await _attention_after(pilot, app, "hi", 6, keys=("f8", "f8"))  # head 1
        rows = _grid_rows(text)
        context = "hithe q"  # the prompt, then the reply but for its newest token
        assert len(rows) == len(context) == 7
        for q, (pos, label, cells) in enumerate(rows):
            assert pos == q and label == context[q].replace(" ", "␣")
            assert cells[q + 1 :] == "·" * (len(context) - q - 1)  # the mask
            assert "·" not in cells[: q + 1]
            # layer 0, head 1: the fake's favourite key is 1 (key 0 for the first row)
            assert cells.index("█") == min(q, 1)
        assert "over the context" not in text  # the grid replaces the strip


async def test_attention_grid_follows_the_head_keys_and_the_average():
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await _attention_after(pilot, app, "hi", 6)
        view = app.query_one(SidePanel).view
        by_head = {}
        for key, head in (("f8", 0), ("f8", 1), ("f7", 0), ("f7", -1)):
            await pilot.press(key)
            assert view.head == head
            by_head[head] = _grid_rows(text_of(view))[-1][2]
        assert by_head[0].index("█") == 0 and by_head[1].index("█") == 1
        assert by_head[-1][:2] == "██"  # the average: as much weight on key 0 as on 1
        assert by_head[-1].strip() == "██"  # and the rest faint


async def test_no_grid_when_the_context_is_long():
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        text = await _attention_after(pilot, app, "once upon a time there", 4)
        assert _grid_rows(text) == [] and "over the context" in text
