"""The dark theme (default) and the light one: the application palette and the colours the
canvas paints with. The canvas reads these module attributes at paint time, so ``apply``
switches a running window."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

from studio.app.node_status import NodeStatus

THEMES = {
    "dark": {
        "BACKGROUND": "#1e1f22", "GRID": "#2a2b2f", "NODE_BODY": "#2f3136", "NODE_TITLE": "#3b3e45",
        "NODE_BORDER": "#4a4d55", "SELECTED": "#e0a030", "TEXT": "#dcdde0", "MUTED_TEXT": "#8b8e96",
        "palette": {"Window": "#25262a", "WindowText": "#dcdde0", "Base": "#1e1f22", "AlternateBase": "#2b2d31",
                    "Text": "#dcdde0", "Button": "#2f3136", "ButtonText": "#dcdde0", "Highlight": "#3d8bfd",
                    "HighlightedText": "#ffffff", "ToolTipBase": "#2f3136", "ToolTipText": "#dcdde0"},
    },
    "light": {
        "BACKGROUND": "#f3f4f6", "GRID": "#e2e4e8", "NODE_BODY": "#ffffff", "NODE_TITLE": "#dfe3ea",
        "NODE_BORDER": "#b8bec9", "SELECTED": "#d08a10", "TEXT": "#1f2328", "MUTED_TEXT": "#6a717d",
        "palette": {"Window": "#eceef1", "WindowText": "#1f2328", "Base": "#ffffff", "AlternateBase": "#f3f4f6",
                    "Text": "#1f2328", "Button": "#e4e7eb", "ButtonText": "#1f2328", "Highlight": "#2f74e0",
                    "HighlightedText": "#ffffff", "ToolTipBase": "#ffffff", "ToolTipText": "#1f2328"},
    },
}
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
