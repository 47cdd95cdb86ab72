"""The dark theme (default) and the colours the canvas paints with."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

BACKGROUND = QColor("#1e1f22")
GRID = QColor("#2a2b2f")
NODE_BODY = QColor("#2f3136")
NODE_TITLE = QColor("#3b3e45")
NODE_BORDER = QColor("#4a4d55")
SELECTED = QColor("#e0a030")
TEXT = QColor("#dcdde0")
MUTED_TEXT = QColor("#8b8e96")
STATUS_COLOURS = {"queued": QColor("#6c7080"), "running": QColor("#3d8bfd"), "cached": QColor("#6f42c1"),
                  "done": QColor("#2fb344"), "error": QColor("#d63939")}


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in ((QPalette.Window, "#25262a"), (QPalette.WindowText, "#dcdde0"), (QPalette.Base, "#1e1f22"),
                         (QPalette.AlternateBase, "#2b2d31"), (QPalette.Text, "#dcdde0"), (QPalette.Button, "#2f3136"),
                         (QPalette.ButtonText, "#dcdde0"), (QPalette.Highlight, "#3d8bfd"),
                         (QPalette.HighlightedText, "#ffffff"), (QPalette.ToolTipBase, "#2f3136"),
                         (QPalette.ToolTipText, "#dcdde0")):
        palette.setColor(role, QColor(colour))
    return palette
