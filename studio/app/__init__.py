"""The desktop app (PySide6). It observes and edits the graph model only through undoable
commands and talks to the engine only through its public API."""
