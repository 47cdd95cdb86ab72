"""What the app remembers between sessions, in QSettings (an INI file beside the autosaves):
theme, recent files, and the settings an artist changes in the Settings dialog (model folders,
output folder, low-VRAM mode), which override the settings file's."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QWidget,
)

from studio.app import theme
from studio.settings import Settings

RECENT_LIMIT = 10


class Preferences:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.store = QSettings(str(path), QSettings.IniFormat)

    @classmethod
    def for_settings(cls, settings: Settings) -> Preferences:
        return cls(Path(settings.autosave_dir).parent / "app.ini")

    @property
    def theme(self) -> str:
        value = str(self.store.value("theme", "dark"))
        return value if value in theme.THEMES else "dark"

    @theme.setter
    def theme(self, name: str) -> None:
        self.store.setValue("theme", name)

    def recent_files(self) -> list[Path]:
        value = self.store.value("recent", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [Path(item) for item in items if item]

    def add_recent(self, path: Path) -> None:
        items = [str(Path(path).resolve())] + [str(p) for p in self.recent_files() if p != Path(path).resolve()]
        self.store.setValue("recent", items[:RECENT_LIMIT])

    def apply(self, settings: Settings) -> Settings:
        """The settings with the artist's choices from the Settings dialog laid over them."""
        changes: dict = {}
        roots = self.store.value("model_roots")
        if roots:
            changes["model_roots"] = tuple(Path(r) for r in ([roots] if isinstance(roots, str) else roots))
        output = self.store.value("output_dir")
        if output:
            changes["output_dir"] = Path(str(output))
        low_vram = self.store.value("low_vram")
        if low_vram is not None:
            changes["low_vram"] = str(low_vram).lower() == "true"
        return settings.replace(**changes) if changes else settings

    def save_settings(self, model_roots: list[Path], output_dir: Path, low_vram: bool) -> None:
        self.store.setValue("model_roots", [str(p) for p in model_roots])
        self.store.setValue("output_dir", str(output_dir))
        self.store.setValue("low_vram", "true" if low_vram else "false")
        self.store.sync()


class SettingsDialog(QDialog):
    """Model folders (one a line), output folder, low-VRAM mode and theme."""

    def __init__(self, settings: Settings, current_theme: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.model_roots = QPlainTextEdit("\n".join(str(p) for p in settings.model_roots))
        self.model_roots.setToolTip("Folders in ComfyUI's layout (checkpoints/, loras/, …), one a line. "
                                    "The demo models are always available.")
        self.model_roots.setFixedHeight(90)
        self.output_dir = QLineEdit(str(settings.output_dir))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        output_row = QHBoxLayout()
        output_row.addWidget(self.output_dir, 1)
        output_row.addWidget(browse)
        self.low_vram = QCheckBox("Keep only the model in use on the GPU")
        self.low_vram.setChecked(settings.low_vram)
        self.theme = QComboBox()
        self.theme.addItems(list(theme.THEMES))
        self.theme.setCurrentText(current_theme)
        form = QFormLayout(self)
        form.addRow("Model folders", self.model_roots)
        form.addRow("Output folder", output_row)
        form.addRow("VRAM", self.low_vram)
        form.addRow("Theme", self.theme)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(560, 300)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output_dir.text())
        if folder:
            self.output_dir.setText(folder)

    def chosen_roots(self) -> list[Path]:
        return [Path(line.strip()).expanduser() for line in self.model_roots.toPlainText().splitlines() if line.strip()]
