"""The parameters that differ between pictures, as the gallery's side-by-side compare highlights them."""

from desktop.core.gallery.differences import differing_keys, parameter_rows


def test_rows_read_the_prompts_then_the_parameters_in_their_order():
    rows = parameter_rows("a red kite\nNegative prompt: blurry\nSteps: 9, Sampler: DDIM, CFG scale: 5.5, Seed: 11")
    assert rows == [("Prompt", "a red kite"), ("Negative prompt", "blurry"), ("Steps", "9"), ("Sampler", "DDIM"),
                    ("CFG scale", "5.5"), ("Seed", "11")]
    assert parameter_rows("") == [] and parameter_rows("  \n") == []


def test_a_key_differs_when_a_value_differs_or_only_some_pictures_have_it():
    one = parameter_rows("a kite\nSteps: 9, Seed: 1, CFG scale: 5")
    two = parameter_rows("a kite\nSteps: 9, Seed: 2, CFG scale: 5, Clip skip: 2")
    three = parameter_rows("a kite\nSteps: 9, Seed: 2, CFG scale: 5")
    assert differing_keys([one, two, three]) == {"Seed", "Clip skip"}
    assert differing_keys([two, three]) == {"Clip skip"}
    assert differing_keys([three, three]) == set()
    assert differing_keys([one, parameter_rows("")]) == {"Prompt", "Steps", "Seed", "CFG scale"}
