"""paths.same_path: the one answer to "is this folder listed already?" for every folder editor."""

import os
import sys

import pytest

from desktop.core.paths import path_key, same_path


def test_a_folder_typed_with_a_trailing_separator_or_dots_is_the_same(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    assert same_path(folder, f"{folder}{os.sep}")
    assert same_path(folder, tmp_path / "other" / ".." / "models")
    assert same_path(str(folder), folder)
    assert not same_path(folder, tmp_path / "models2")


def test_a_folder_typed_with_tilde_is_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))  # what expanduser reads on Windows
    (tmp_path / "sd").mkdir()
    assert same_path("~/sd", tmp_path / "sd")
    assert same_path("~/sd/", str(tmp_path / "sd"))


def test_a_folder_that_does_not_exist_yet_compares_by_its_spelling(tmp_path):
    assert same_path(tmp_path / "later", f"{tmp_path / 'later'}{os.sep}")
    assert not same_path(tmp_path / "later", tmp_path / "sooner")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_folder_reached_through_a_link_is_the_same(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    try:
        link.symlink_to(real, target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links need a privilege here")
    assert same_path(link, real)


def test_letter_case_counts_only_where_the_file_system_ignores_it(tmp_path):
    folder = tmp_path / "Models"
    folder.mkdir()
    shouted = tmp_path / "MODELS"
    insensitive = shouted.exists()  # Windows, and macOS's default file system
    assert same_path(folder, shouted) == insensitive
    if sys.platform in ("win32", "darwin"):
        assert path_key(folder) == path_key(shouted)


def test_names_that_cannot_exist_are_different_not_errors(tmp_path):
    assert not same_path(tmp_path / "a\0b", tmp_path / "a")
    assert same_path("~nosuchuser/x", "~nosuchuser/x/")
