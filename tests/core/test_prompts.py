"""A1111's prompt syntax: emphasis weights, BREAK, LoRA tags and 75-token chunks."""

import pytest

from desktop.core.prompts import (
    BREAK,
    CHUNK_LENGTH,
    EmbeddingAt,
    ExtraNetwork,
    Piece,
    chunk,
    embedding_finder,
    extract_extra_networks,
    parse_emphasis,
    prompt_schedule,
    pieces_for,
    token_limit,
)

# A1111's own docstring examples of parse_prompt_attention (its behaviour, our golden table).
GOLDEN = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
    ("", [("", 1.0)]),
    ("[faded]", [("faded", 1 / 1.1)]),
    ("(a:0.5) b", [("a", 0.5), (" b", 1.0)]),
    ("unmatched) ]closers", [("unmatched) ]closers", 1.0)]),
    ("weight without bracket:1.2)", [("weight without bracket:1.2)", 1.0)]),
    ("a \\\\ backslash", [("a \\ backslash", 1.0)]),
    ("ratio 16:9", [("ratio 16:9", 1.0)]),
]


@pytest.mark.parametrize("text, expected", GOLDEN)
def test_emphasis_matches_a1111(text, expected):
    assert [(p.text, p.weight) for p in parse_emphasis(text)] == expected


def test_break_splits_into_its_own_piece_and_eats_the_spaces_around():
    assert parse_emphasis("a cat BREAK (a dog)") == [Piece("a cat"), BREAK, Piece("", 1.0), Piece("a dog", 1.1)]
    assert parse_emphasis("BREAKFAST") == [Piece("BREAKFAST")]  # only the word
    assert parse_emphasis("break") == [Piece("break")]  # only in capitals


def test_emphasis_modes():
    assert pieces_for("a (b:1.5)", "None") == [Piece("a (b:1.5)")]
    assert pieces_for("a (b:1.5)", "Ignore") == [Piece("a "), Piece("b")]
    assert pieces_for("a (b:1.5)", "No norm") == [Piece("a "), Piece("b", 1.5)]


def test_lora_tags_leave_the_text_and_keep_their_weights():
    text, found = extract_extra_networks("a cat, <lora:detail:0.7>, <lyco:Style_2:0.5:1.2> <lora:plain>")
    assert text == "a cat, ,  "
    assert found == [ExtraNetwork("lora", "detail", 0.7, 0.7), ExtraNetwork("lyco", "Style_2", 0.5, 1.2),
                     ExtraNetwork("lora", "plain", 1.0, 1.0)]
    assert extract_extra_networks("<lora:x:te=0.2:unet=0.9>")[1] == [ExtraNetwork("lora", "x", 0.2, 0.9)]
    with pytest.raises(ValueError, match="not a number"):
        extract_extra_networks("<lora:x:lots>")


BOS, EOS, COMMA = 1000, 1001, 5


def _ids(n, start=10):
    return list(range(start, start + n))


def test_a_short_prompt_is_one_chunk_padded_with_eos():
    chunks, count = chunk([(_ids(3), Piece("abc", 1.1))], BOS, EOS, COMMA)
    assert count == 3 and len(chunks) == 1
    tokens, weights = chunks[0].tokens, chunks[0].weights
    assert len(tokens) == CHUNK_LENGTH + 2
    assert tokens[:5] == (BOS, 10, 11, 12, EOS) and set(tokens[4:]) == {EOS}
    assert weights[:5] == (1.0, 1.1, 1.1, 1.1, 1.0) and set(weights[4:]) == {1.0}


def test_an_empty_prompt_is_one_empty_chunk():
    chunks, count = chunk([([], Piece(""))], BOS, EOS, COMMA)
    assert count == 0 and chunks[0].tokens == (BOS,) + (EOS,) * 76


def test_long_prompts_fill_75_token_chunks():
    chunks, count = chunk([(_ids(160), Piece("x"))], BOS, EOS, COMMA)
    assert len(chunks) == 3 and count == 160
    assert chunks[0].tokens[1:76] == tuple(_ids(75)) and chunks[1].tokens[1:76] == tuple(_ids(75, 85))
    assert token_limit(count) == 225 and token_limit(0) == 75 and token_limit(75) == 75 and token_limit(76) == 150


def test_a_comma_in_the_last_20_tokens_moves_the_rest_to_the_next_chunk():
    ids = _ids(60) + [COMMA] + _ids(30, 200)  # comma at index 60: 14 tokens after it fill the first chunk
    chunks, count = chunk([(ids, Piece("x"))], BOS, EOS, COMMA)
    first, second = chunks
    assert first.tokens[61] == COMMA and set(first.tokens[62:]) == {EOS}  # cut right after the comma
    assert second.tokens[1:31] == tuple(_ids(30, 200))
    assert count == 75 + 30


def test_a_comma_further_back_than_20_tokens_does_not_move_anything():
    ids = _ids(50) + [COMMA] + _ids(40, 200)  # 24 tokens after the comma when the chunk is full
    first, second = chunk([(ids, Piece("x"))], BOS, EOS, COMMA)[0]
    assert first.tokens[1:76] == tuple(ids[:75]) and second.tokens[1:17] == tuple(ids[75:])


def test_break_closes_the_chunk():
    chunks, count = chunk([(_ids(3), Piece("a")), ([], BREAK), (_ids(2, 50), Piece("b", 1.2))], BOS, EOS, COMMA)
    assert len(chunks) == 2 and count == 75 + 2
    assert chunks[1].tokens[:4] == (BOS, 50, 51, EOS) and chunks[1].weights[1:3] == (1.2, 1.2)


def test_embeddings_take_their_vector_count_and_never_straddle_chunks():
    find = embedding_finder({"emb": ([7, 8], 3)})
    chunks, count = chunk([([10, 7, 8, 11], Piece("x", 1.1))], BOS, EOS, COMMA, find)
    assert chunks[0].tokens[:6] == (BOS, 10, 0, 0, 0, 11)
    assert chunks[0].embeddings == (EmbeddingAt(2, "emb"),) and chunks[0].weights[2:5] == (1.1,) * 3
    chunks, _ = chunk([(_ids(74) + [7, 8], Piece("x"))], BOS, EOS, COMMA, find)
    assert chunks[1].embeddings == (EmbeddingAt(1, "emb"),) and chunks[0].tokens[75] == EOS


# A1111's own docstring examples of its prompt schedules at 10 steps (behaviour, our golden table).
SCHEDULES = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("a [{b|d{:.5] c", [(5, "a  c"), (10, "a {b|d{ c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(i, "a" if i % 2 else "(b:1.1)") for i in range(1, 11)]),
    ("[fe|]male", [(i, "female" if i % 2 else "male") for i in range(1, 11)]),
    ("[fe|||]male", [(i, "female" if i % 4 == 1 else "male") for i in range(1, 11)]),
    ("a [b:1.5] c", [(10, "a  c")]),  # after 150% of the steps: never
    ("[cat:dog:0.3] in [snow]", [(3, "cat in [snow]"), (10, "dog in [snow]")]),
    ("a \\[b:3\\]", [(10, "a \\[b:3\\]")]),
]


@pytest.mark.parametrize("text, expected", SCHEDULES)
def test_prompt_editing_matches_a1111(text, expected):
    assert prompt_schedule(text, 10) == expected
