"""ComfyUI's workflow formats: import (UI, API, PNG) and export (UI, API)."""

from studio.graph.comfy.exporter import to_comfy_api, to_comfy_ui
from studio.graph.comfy.importer import ComfyFormatError, ImportReport, import_api, import_ui

__all__ = ["ComfyFormatError", "ImportReport", "import_api", "import_ui", "to_comfy_api", "to_comfy_ui"]
