"""Seed Studio's shipped files (model configs, tokenizers, demo models, sample images), installed
as the ``seed_studio_resources`` package; ``studio.settings.RESOURCES_DIR`` is where they lie."""
