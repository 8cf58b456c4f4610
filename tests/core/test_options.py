"""desktop/core/options.parse_options: the key=value text of --control and --reference, one rule for both."""

import pytest

from desktop.core.errors import InvalidRequest
from desktop.core.options import parse_options


def test_a_path_with_a_comma_and_a_drive_stays_whole():
    text = r"image=C:\My Pictures, 2024\edges.png,type=canny, weight = 0.5 ,"
    assert parse_options(text, "--control") == {"image": r"C:\My Pictures, 2024\edges.png", "type": "canny",
                                                 "weight": "0.5"}
    assert parse_options(r"image=D:\a=b\c.png", "--reference") == {"image": r"D:\a=b\c.png"}


@pytest.mark.parametrize("text, words", [
    ("image=a.png,IMAGE=b.png", "image is given twice in 'image=a.png,IMAGE=b.png'; give it once."),
    ("canny,image=a.png", "expected key=value parts separated by commas"),
])
def test_bad_text_is_one_sentence_naming_the_option(text, words):
    with pytest.raises(InvalidRequest) as caught:
        parse_options(text, "--control")
    assert caught.value.field == "--control" and words in caught.value.message
    assert "\n" not in str(caught.value)
