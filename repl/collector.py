"""The cyclic garbage collector in a long app session: full passes kept short.

Python's full collection walks every tracked object with the interpreter lock held, so
while it runs neither the UI nor the decoder thread moves. A chat keeps alive what it has
drawn (Textual's strips and their caches: ~35 tracked objects per settled line), so over
a session each full pass stalled both for longer: 45 ms in the first of 12 replies of
3,000 characters, 128-149 ms in the last ones (benchmarks/RESULTS.md, session 8).

What has settled is frozen instead (``gc.freeze``): at each turn's end a collection of
what is not frozen yet (only what came since the last turn), then a freeze of
its survivors, so the passes during the next reply walk only the objects that reply
makes. The price: a frozen object that becomes garbage later is never found by a pass,
and Textual keeps replacing things (strips, the footer's keys, panel views: ~2,000
objects a turn that die in cycles). So every ``SWEEP_TURNS`` turn ends, and when
``:clear`` drops the chat, a sweep unfreezes everything, collects it all and freezes
what is left: one full pass (~0.2 s with TensorFlow's objects) at a moment when nothing
streams, in place of one every few seconds while a reply streams.

TensorFlow's import freezes its own objects (gpt2core._tf); a sweep unfreezes them too
for its one pass and freezes them again with the rest.
"""

from __future__ import annotations

import gc
import time


class Collector:
    SWEEP_TURNS = 8  # turn ends between two sweeps: what leaks stays bounded

    def __init__(self) -> None:
        self.turns = 0  # turn ends since the last sweep
        self.sweeps = 0
        self.last_s = 0.0  # how long the last settle or sweep held the interpreter

    def turn_done(self) -> None:
        """A turn has ended (its text is drawn): freeze what survives, sweeping instead
        every SWEEP_TURNS turns."""
        self.turns += 1
        if self.turns >= self.SWEEP_TURNS:
            self.sweep()
        else:
            self.settle()

    def settle(self) -> None:
        """Collect what is not frozen (what came since the last settle) and freeze what
        survives."""
        t = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.last_s = time.perf_counter() - t

    def sweep(self) -> None:
        """Collect everything, frozen or not, and freeze what is left."""
        t = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.turns = 0
        self.sweeps += 1
        self.last_s = time.perf_counter() - t
