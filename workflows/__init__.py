"""Seed Studio's shipped workflows, installed as the ``seed_studio_workflows`` package;
``studio.settings.WORKFLOWS_DIR`` is where they lie."""
