"""`findings --pair` with sides of different token counts says so, shows both tokenizations and
the alignment used before any number; the same length says "position by position" first."""

from gpt2np import cli
from gpt2np.analysis.examples import examples_for
from gpt2np.analysis.interventions import align_tokens

A, B = "The cat sat on the mat.", "The big black cat sat on the mat."


def test_different_lengths_are_told_before_any_number(demo, capsys):
    ta, tb = demo.encode(A), demo.encode(B)
    assert len(ta) != len(tb)
    assert cli.main(["findings", "--model", "demo", "--pair", A, B]) == 0
    lines = capsys.readouterr().out.splitlines()
    first_number = next(i for i, line in enumerate(lines) if "next:" in line)
    head = "\n".join(lines[:first_number])
    assert lines[0].startswith(f"the two sentences tokenize to different lengths ({len(ta)} and {len(tb)} tokens)")
    assert lines[1].startswith(f"  a ({len(ta)} tokens): 0:") and lines[2].startswith(f"  b ({len(tb)} tokens): 0:")
    pairs, mode = align_tokens(ta, tb)                     # the alignment, computed here again
    assert mode == "shared" and "aligned (a ↔ b): " + " ".join(f"{i}↔{j}" for i, j in pairs) in head
    alone_b = [j for j in range(len(tb)) if j not in {j for _, j in pairs}]
    shown = demo.token_strings([tb[j] for j in alone_b])
    assert all(f'{j}:"{s}"' in head for j, s in zip(alone_b, shown)) and "only in b:" in head


def test_same_length_says_position_by_position(demo, capsys):
    ex = examples_for(demo)["pair"]
    assert cli.main(["findings", "--model", "demo", "--pair", ex["clean"], ex["corrupted"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"same number of tokens ({len(demo.encode(ex['clean']))}): compared position by position")
    assert "aligned (a ↔ b)" not in out
