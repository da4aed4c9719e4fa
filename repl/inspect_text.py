"""An ``Inspection`` as text tables, for `gpt2 inspect` and `:inspect` (no UI imports)."""

from __future__ import annotations

from gpt2core.inspect import Inspection
from gpt2core.tokenizer import piece
from repl.attention_grid import INTRO, grid_rows, header, margin
from repl.terminal import safe

GRID_LABEL = 8  # characters of each piece in the grid's row labels


def _p(tokenizer, token_id: int, width: int = 12) -> str:
    return safe(repr(piece(tokenizer, token_id)))[:width]  # repr first: ESC reads '\x1b'


def inspection_text(ins: Inspection, tokenizer) -> str:
    pos = [safe(repr(p))[:12] for p in ins.pieces]  # as gpt2 tokenize shows them
    lines = [f"model: {safe(ins.model)}", f"prompt: {len(ins.input_ids)} tokens"]
    if ins.dropped_tokens:
        lines.append(f"  ({ins.dropped_tokens} tokens cut from the left to fit the context)")
    lines.append("    #      id  piece")
    rows = enumerate(zip(ins.input_ids, pos, strict=True))
    lines += [f"{n:>5}  {i:>6}  {p}" for n, (i, p) in rows]
    lines.append(f"\nnext token (entropy {ins.entropy_bits:.2f} bits):")
    lines += [f"  {i:>6}  {_p(tokenizer, i):<14} {p:6.1%}" for i, p in ins.next]
    first = ins.first_layer_of_final_pick()
    lines.append("\nlogit lens: what each layer would predict (through ln_f and the head)")
    for layer, row in enumerate(ins.lens):
        cells = "  ".join(f"{_p(tokenizer, i, 10)} {p:.0%}" for i, p in row[:3])
        mark = "  <- first layer with the final pick on top" if layer == first else ""
        lines.append(f"  layer {layer + 1:>2}: {cells}{mark}")
    lines.append(
        "\nattention of the last position: most attended (heads averaged) | strongest head"
    )
    for layer in range(ins.attention.shape[0]):
        avg = ", ".join(f"{pos[i]} {w:.0%}" for i, w in ins.most_attended(layer))
        head, i, w = ins.strongest_head(layer)
        lines.append(f"  layer {layer + 1:>2}: {avg} | head {head}: {pos[i]} {w:.0%}")
    if ins.attention_grid is not None:
        lines += _grids(ins)
    return "\n".join(lines)


def _grids(ins: Inspection) -> list[str]:
    """Every position's attention (heads averaged), for the first and the last layer."""
    n_layer, _, t, _ = ins.attention_grid.shape  # (L, nh, T, T)
    lines = []
    for layer in sorted({0, n_layer - 1}):
        g = ins.attention_grid[layer].mean(axis=0)  # (nh, T, T) -> (T, T)
        lines.append(f"\nattention of every position, layer {layer + 1} (heads averaged; {INTRO})")
        lines.append(" " * margin(GRID_LABEL) + header(t, 2))
        rows = grid_rows(g, ins.pieces, GRID_LABEL, 2)
        lines += [f"{r.index}{r.label}{r.shades}{r.masked}".rstrip() for r in rows]
    return lines
