"""Which model is selected after a scan of the model folders."""

from desktop.core.model_choice import after_scan


def test_on_start_up_a_real_model_beats_the_demo():
    assert after_scan(["a", "b"], "demo", first_scan=True, loaded="demo") == ("a", False)
    assert after_scan(["a", "b"], "demo", first_scan=False, loaded="demo") == ("demo", False)
    assert after_scan([], "demo", first_scan=True, loaded="demo") == ("demo", False)


def test_a_chosen_model_stays_and_a_vanished_loaded_one_is_reported():
    assert after_scan(["a", "b"], "b", first_scan=False, loaded="b") == ("b", False)
    assert after_scan(["a"], "b", first_scan=False, loaded="b") == ("a", True)
    assert after_scan([], "b", first_scan=False, loaded="b") == ("demo", True)
    assert after_scan(["a"], "b", first_scan=False, loaded="a") == ("a", False)  # never loaded: nothing to say
