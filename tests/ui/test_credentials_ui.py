"""Content credentials in the window: results the worker saves are signed, the gallery's detail panel shows the
badge and the manifest's summary (and "tampered" in red for a changed picture), a picture that cannot be signed
is saved anyway with the reason in the closing status line, and the Settings window has the switch, its
explanation and a check of a person's own certificate. All on a FakeBackend."""

import numpy as np
from PySide6.QtCore import Qt

from desktop.core import credentials
from desktop.core import settings as settings_store
from desktop.core.gallery.store import GalleryStore
from desktop.core.settings import Settings

from desktop.ui.settings_dialog import CREDENTIALS_NOTE, SettingsDialog
from desktop.ui.worker import GenerationWorker
from tests.support.fake_backend import FakeBackend
from tests.support.pngs import with_one_pixel_byte_changed
from tests.support.requests import make_request

TIMEOUT = 30_000
REQUEST = make_request(prompt="a boat at dawn", model="some/model", width=64, height=64, steps=3, seed=5)


def open_gallery(make_window, qtbot):
    window = make_window()
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    qtbot.mouseClick(window.tabs.tabBar(), Qt.MouseButton.LeftButton, pos=window.tabs.tabBar().tabRect(1).center())
    return window, window.gallery


def test_a_generated_picture_is_signed_and_the_gallery_shows_its_badge(make_window, qtbot):
    window, gallery = open_gallery(make_window, qtbot)
    window.panel.set_request(make_request(prompt="a lighthouse", steps=2, width=64, height=64, seed=9))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    gallery.select_row(0)
    path = gallery.store.path(gallery.current())
    assert credentials.read(path).state == credentials.UNTRUSTED
    qtbot.waitUntil(lambda: gallery.credentials.isVisible(), timeout=TIMEOUT)
    assert gallery.credentials.text() == ("Content credentials: valid, untrusted signer (Sfumato's own key). "
                                          f"Created by Sfumato {_version()}, made by a model.")
    assert "lighthouse" not in gallery.credentials.text()


def _version():
    from desktop.core import marking

    return marking.version()


def test_a_changed_picture_shows_as_tampered_and_an_unsigned_one_shows_no_badge(make_window, qtbot, sfumato_home):
    store = GalleryStore(sfumato_home / "outputs", sfumato_home / "cache" / "thumbnails")
    signed = store.add_result(np.full((64, 64, 3), 90, np.uint8), REQUEST, 1, "m", signing=credentials.Signing())
    changed = signed.with_name("changed.png")
    changed.write_bytes(with_one_pixel_byte_changed(signed.read_bytes()))
    store.add_result(np.full((64, 64, 3), 30, np.uint8), REQUEST, 2, "m")  # unsigned: no badge
    store.close()
    window, gallery = open_gallery(make_window, qtbot)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 3, timeout=TIMEOUT)
    rows = {gallery.store.path(gallery.model.record(row)).name: row for row in range(3)}
    gallery.select_row(rows["changed.png"])
    qtbot.waitUntil(lambda: gallery.credentials.isVisible(), timeout=TIMEOUT)
    assert gallery.credentials.text().startswith("Content credentials: tampered (the picture changed after it was "
                                                 "signed). Created by Sfumato")
    assert "#c0392b" in gallery.credentials.styleSheet()
    gallery.select_row(rows[signed.name])
    qtbot.waitUntil(lambda: "valid, untrusted" in gallery.credentials.text(), timeout=TIMEOUT)
    gallery.select_row(rows["00002-2.png"])
    qtbot.waitUntil(lambda: not gallery.credentials.isVisible(), timeout=TIMEOUT)


def test_a_picture_that_cannot_be_signed_is_saved_and_the_status_says_why(qtbot, tmp_path):
    chosen = settings_store.load()
    chosen.credentials_certificate, chosen.credentials_key = str(tmp_path / "gone.pem"), str(tmp_path / "key.pem")
    worker = GenerationWorker(chosen, lambda settings: FakeBackend())
    statuses = []
    worker.status.connect(statuses.append)
    try:
        with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT) as finished:
            worker.submit(REQUEST)
        qtbot.waitUntil(lambda: statuses and statuses[-1].startswith("Done"), timeout=TIMEOUT)
    finally:
        assert worker.shutdown(5000)
    (_, _, path), = finished.args[1]
    assert path.is_file() and credentials.read(path).state == credentials.NONE
    assert statuses[-1].endswith(f". {path.name} is saved without content credentials: the certificate chain "
                                 f"{tmp_path / 'gone.pem'} could not be read (No such file or directory); choose "
                                 "another file in File > Settings.")


def test_with_the_switch_off_results_are_not_signed(qtbot):
    chosen = settings_store.load()
    chosen.content_credentials = False
    worker = GenerationWorker(chosen, lambda settings: FakeBackend())
    try:
        with qtbot.waitSignal(worker.job_finished, timeout=TIMEOUT) as finished:
            worker.submit(REQUEST)
    finally:
        assert worker.shutdown(5000)
    (_, _, path), = finished.args[1]
    assert path.is_file() and credentials.read(path).state == credentials.NONE


def test_the_settings_window_has_the_switch_its_explanation_and_checks_a_certificate(open_dialog, qtbot, tmp_path):
    dialog = open_dialog(Settings())
    assert dialog.content_credentials.isChecked() and dialog.content_credentials.isEnabled()
    assert dialog.credentials_note.isVisible() and dialog.credentials_note.text() == CREDENTIALS_NOTE
    assert "untrusted signer" in CREDENTIALS_NOTE
    dialog.mark_ai.setChecked(False)  # the manifest says "generated" too: it goes only with the mark
    assert not dialog.content_credentials.isEnabled() and not dialog.credentials_certificate.isEnabled()
    dialog.mark_ai.setChecked(True)
    assert not dialog.credentials_certificate.isVisible()  # Sfumato's own key: no fields to fill in
    qtbot.mouseClick(dialog.own_certificate, Qt.MouseButton.LeftButton)
    assert dialog.credentials_certificate.isVisible() and dialog.focusWidget() is dialog.credentials_certificate
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("hello")
    dialog.credentials_certificate.setText(str(not_a_key))
    dialog.credentials_key.setText(str(not_a_key))
    qtbot.waitUntil(lambda: dialog.credentials_error.isVisible(), timeout=5000)
    assert dialog.credentials_error.text() == ("notes.txt holds no PEM certificate; content credentials need the "
                                               "signing certificate first, then its issuers.")
    assert not dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.own_certificate, Qt.MouseButton.LeftButton)  # back to Sfumato's own key
    assert not dialog.credentials_error.isVisible() and not dialog.credentials_certificate.isVisible()
    assert dialog.ok_button.isEnabled()
    dialog.content_credentials.setChecked(False)
    edited = dialog.settings()
    assert (edited.content_credentials, edited.credentials_certificate, edited.credentials_key) == (False, "", "")


def test_the_settings_window_shows_a_person_s_certificate_it_was_given(open_dialog, tmp_path):
    dialog = open_dialog(Settings(credentials_certificate="/nowhere/chain.pem", credentials_key="/nowhere/key.pem"))
    assert dialog.own_certificate.isChecked() and dialog.credentials_certificate.text() == "/nowhere/chain.pem"
    assert dialog.credentials_error.text().startswith("The certificate chain /nowhere/chain.pem could not be read")
    assert not dialog.ok_button.isEnabled()
