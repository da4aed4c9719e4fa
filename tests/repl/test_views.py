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
        assert seen["Attention"] == {"attention"} and seen["Lens"] == {"lens"}
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
