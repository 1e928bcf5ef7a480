"""The heuristic rules flag what they name and pass ordinary text."""

from qwen_min.corpus.heuristics import flags, repeated_line_fraction, top_ngram_fraction

PROSE = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want "
         "of a wife. However little known the feelings or views of such a man may be on his first entering a "
         "neighbourhood, this truth is so well fixed in the minds of the surrounding families.")


def test_ordinary_prose_passes():
    assert flags(PROSE) == {"too_short": False, "repetitive": False, "language": False}


def test_each_rule_fires():
    assert flags("Call me Ishmael.")["too_short"]
    assert flags("\n".join(["Buy now, best price, free shipping!"] * 12))["repetitive"]
    assert flags("cheap shoes cheap shoes " * 20)["repetitive"]  # keyword stuffing inside one line
    assert flags("Der schnelle braune Fuchs springt über den faulen Hund, und die Katze schläft im warmen Haus, "
                 "während draußen der Regen fällt und die Kinder in der Schule sitzen und lernen.")["language"]


def test_chinese_counts_characters_not_spaces():
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。" * 2
    assert not flags(poem)["too_short"] and not flags(poem)["language"]


def test_repetition_measures():
    assert repeated_line_fraction("a\nb\na\na") == 0.5
    assert repeated_line_fraction("") == 0.0
    assert top_ngram_fraction("one two") == 0.0
