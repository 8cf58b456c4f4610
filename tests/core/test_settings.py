from desktop.core import settings


def test_missing_file_gives_defaults():
    assert settings.load() == settings.Settings()


def test_round_trip(tmp_path):
    saved = settings.Settings(device="cpu", models_folders=["/m"], preview_every=3)
    settings.save(saved)
    assert settings.load() == saved


def test_corrupt_file_falls_back_with_a_notice():
    path = settings.paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    loaded = settings.load()
    assert loaded == settings.Settings()
    assert "could not be read" in loaded.notice


def test_bad_values_fall_back_one_by_one():
    loaded = settings.Settings.from_json({"device": "quantum", "preview_every": 0, "theme": "dark", "extra": 1})
    assert (loaded.device, loaded.preview_every, loaded.theme) == ("auto", 1, "dark")


def test_a_corrupt_file_is_kept_aside_not_overwritten():
    path = settings.paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"models_folders": ["/my/models"],}')  # a hand edit with a trailing comma
    loaded = settings.load()
    settings.save(loaded)
    kept = path.with_name("settings.json.bad")
    assert kept.read_text() == '{"models_folders": ["/my/models"],}'
    assert "settings.json.bad" in loaded.notice


def test_the_aspect_lock_is_kept(tmp_path):
    path = tmp_path / "settings.json"
    settings.save(settings.Settings(aspect_locked=True), path)
    assert settings.load(path).aspect_locked is True
    path.write_text('{"aspect_locked": "yes"}', encoding="utf-8")
    assert settings.load(path).aspect_locked is False
