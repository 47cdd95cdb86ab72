"""The dark theme (default) and the light one: the application palette and the colours the
canvas paints with. The canvas reads these module attributes at paint time, so ``apply``
switches a running window."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

from studio.app.node_status import NodeStatus

THEME_NAMES = ("dark", "light")
# Each colour the canvas paints with, and each role of Qt's palette, as (dark, light): one row
# per role, so a theme cannot lack one.
CANVAS_COLOURS = {
    "BACKGROUND": ("#1e1f22", "#f3f4f6"), "GRID": ("#2a2b2f", "#e2e4e8"), "NODE_BODY": ("#2f3136", "#ffffff"),
    "NODE_TITLE": ("#3b3e45", "#dfe3ea"), "NODE_BORDER": ("#4a4d55", "#b8bec9"), "SELECTED": ("#e0a030", "#d08a10"),
    "TEXT": ("#dcdde0", "#1f2328"), "MUTED_TEXT": ("#8b8e96", "#6a717d"),
}
PALETTE_COLOURS = {
    "Window": ("#25262a", "#eceef1"), "WindowText": ("#dcdde0", "#1f2328"), "Base": ("#1e1f22", "#ffffff"),
    "AlternateBase": ("#2b2d31", "#f3f4f6"), "Text": ("#dcdde0", "#1f2328"), "Button": ("#2f3136", "#e4e7eb"),
    "ButtonText": ("#dcdde0", "#1f2328"), "Highlight": ("#3d8bfd", "#2f74e0"),
    "HighlightedText": ("#ffffff", "#ffffff"), "ToolTipBase": ("#2f3136", "#ffffff"),
    "ToolTipText": ("#dcdde0", "#1f2328"),
}
THEMES = {name: {**{key: pair[index] for key, pair in CANVAS_COLOURS.items()},
                 "palette": {role: pair[index] for role, pair in PALETTE_COLOURS.items()}}
          for index, name in enumerate(THEME_NAMES)}
STATUS_COLOURS = {NodeStatus.QUEUED: QColor("#6c7080"), NodeStatus.RUNNING: QColor("#3d8bfd"),
                  NodeStatus.CACHED: QColor("#6f42c1"), NodeStatus.DONE: QColor("#2fb344"),
                  NodeStatus.ERROR: QColor("#d63939")}

current = "dark"
BACKGROUND = GRID = NODE_BODY = NODE_TITLE = NODE_BORDER = SELECTED = TEXT = MUTED_TEXT = QColor()


def _set_colours(name: str) -> None:
    global current
    current = name
    for key, value in THEMES[name].items():
        if key != "palette":
            globals()[key] = QColor(value)


def palette(name: str = "dark") -> QPalette:
    result = QPalette()
    for role, colour in THEMES[name]["palette"].items():
        result.setColor(getattr(QPalette, role), QColor(colour))
    return result


def dark_palette() -> QPalette:
    return palette("dark")


def apply(name: str) -> None:
    """Switch the application's palette and the canvas colours (open canvases repaint)."""
    from PySide6.QtWidgets import QApplication

    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r} (expected one of {', '.join(THEMES)})")
    _set_colours(name)
    app = QApplication.instance()
    if app is not None:
        app.setPalette(palette(name))


_set_colours("dark")
