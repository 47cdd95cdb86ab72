"""Settings dialog (stored in QSettings), light theme, recent files."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor

from studio.app import theme
from studio.app.preferences import Preferences
from studio.settings import WORKFLOWS_DIR


def test_settings_dialog_changes_folders_vram_and_theme_and_they_persist(window, tmp_path):
    dialog = window.open_settings()
    dialog.model_roots.setPlainText(f"{tmp_path / 'models-a'}\n{tmp_path / 'models-b'}\n")
    dialog.output_dir.setText(str(tmp_path / "renders"))
    dialog.low_vram.setChecked(True)
    dialog.theme.setCurrentText("light")
    old_engine = window.engine
    dialog.accept()
    assert window.settings.model_roots == (tmp_path / "models-a", tmp_path / "models-b")
    assert window.settings.output_dir == tmp_path / "renders" and window.settings.low_vram
    assert window.engine is not old_engine and window.engine.settings == window.settings
    assert theme.current == "light" and QColor("#f3f4f6") == theme.BACKGROUND
    # The canvas repaints in the light colours.
    image = window.view.viewport().grab().toImage()
    corner = QColor(image.pixel(3, 3))
    assert corner.lightness() > 200
    # Remembered: a new session starts with them.
    again = Preferences.for_settings(window.settings)
    assert again.theme == "light"
    restored = again.apply(window.settings.replace(model_roots=(), output_dir=Path("/elsewhere"), low_vram=False))
    assert restored.model_roots == window.settings.model_roots and restored.low_vram
    window.set_theme("dark")
    assert theme.current == "dark"


def test_opened_and_saved_files_are_listed_as_recent(window, tmp_path):
    window.open_file(WORKFLOWS_DIR / "default.json")
    window.path = tmp_path / "mine.json"
    window._save()
    recent = window.preferences.recent_files()
    assert recent[:2] == [(tmp_path / "mine.json").resolve(), (WORKFLOWS_DIR / "default.json").resolve()]
    window._fill_recent_menu()
    texts = [action.text() for action in window.recent_menu.actions()]
    assert texts[0] == str((tmp_path / "mine.json").resolve())
    window.recent_menu.actions()[1].trigger()
    assert window.path.resolve() == (WORKFLOWS_DIR / "default.json").resolve()
