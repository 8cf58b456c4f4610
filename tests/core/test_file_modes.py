"""Files Sfumato writes get the mode the user's umask gives any new file (not mkstemp's 0600)."""

import os
import stat

import numpy as np
import pytest

from desktop.core import atomic, ora
from desktop.core.document import CanvasDocument
from desktop.core.gallery import export as exporting
from desktop.core.gallery.store import GalleryStore
from desktop.core.geometry import Extent

from tests.support.requests import make_request

pytestmark = pytest.mark.skipif(os.name != "posix", reason="permission bits are a POSIX thing")


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def write_the_three(tmp_path):
    """A gallery result, an export of it and an .ora save: what a user finds in their folders."""
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    request = make_request(prompt="a lighthouse", seed=7, width=64, height=64).resolved()
    pixels = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    result = store.add_result(pixels, request, 7, "tiny")
    record = store.index.by_path(store.relative(result))
    exported = exporting.export([(record, store.path(record))], exporting.ExportOptions(tmp_path / "exported"))[0]
    document = tmp_path / "drawing.ora"
    ora.write(document, CanvasDocument.new(Extent(32, 32)).snapshot())
    return store.path(record), exported, document


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mask, expected):
    umask(mask)
    for path in write_the_three(tmp_path):
        assert mode(path) == expected, path.name


def test_no_temporary_file_is_left_and_the_content_is_whole(tmp_path, umask):
    umask(0o022)
    atomic.write_bytes(tmp_path / "a.bin", b"x" * 1000)
    written = atomic.write_new(tmp_path / "a.bin", lambda handle: handle.write(b"y"))
    assert written.name == "a-2.bin" and sorted(p.name for p in tmp_path.iterdir()) == ["a-2.bin", "a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"x" * 1000 and mode(written) == 0o644


def test_a_replaced_file_keeps_its_own_mode(tmp_path, umask):
    """Saving again over a file someone made private (or group-writable) keeps it so, as writing in place would."""
    umask(0o022)
    private = tmp_path / "private.ora"
    private.write_bytes(b"old")
    private.chmod(0o600)
    atomic.write_bytes(private, b"new")
    assert private.read_bytes() == b"new" and mode(private) == 0o600
    shared = tmp_path / "shared.json"
    shared.write_bytes(b"{}")
    shared.chmod(0o664)
    atomic.write_json(shared, {"a": 1})
    assert mode(shared) == 0o664
