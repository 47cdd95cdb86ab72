from __future__ import annotations

import textwrap

import pytest

from studio.node_api import NodeBase, NodeDeclarationError
from studio.registry import Registry, build_registry

PLUGIN = '''
from studio.graph.sockets import INT
from studio.node_api import Input, NodeBase, Output


class Triple(NodeBase):
    """Three times its input."""

    type_name = "Triple"
    category = "math"
    title = "Triple"
    inputs = (Input("value", INT, default=1),)
    outputs = (Output("INT", INT),)

    def run(self, ctx, value):
        return (value * 3,)
'''


def test_the_core_library_has_comfyui_names_and_inputs(registry):
    for type_name, inputs in {
        "LoadImage": ["image"],
        "SaveImage": ["images", "filename_prefix"],
        "PreviewImage": ["images"],
        "ImageScale": ["image", "upscale_method", "width", "height", "crop"],
        "ImageScaleBy": ["image", "upscale_method", "scale_by"],
        "ImageInvert": ["image"],
        "ImageBlend": ["image1", "image2", "blend_factor", "blend_mode"],
        "ImageCrop": ["image", "width", "height", "x", "y"],
        "EmptyImage": ["width", "height", "batch_size", "color"],
        "PrimitiveInt": ["value"], "PrimitiveFloat": ["value"], "PrimitiveString": ["value"],
        "PrimitiveBoolean": ["value"],
    }.items():
        cls = registry.get(type_name)
        assert cls is not None, type_name
        assert [spec.name for spec in cls.inputs] == inputs
    assert [o.name for o in registry.get("LoadImage").outputs] == ["IMAGE", "MASK"]


def test_plugins_load_only_from_configured_folders(tmp_path):
    folder = tmp_path / "my-nodes"
    folder.mkdir()
    (folder / "triple.py").write_text(PLUGIN)
    assert "Triple" not in build_registry()
    registry = build_registry([folder])
    assert registry.get("Triple").type_name == "Triple"
    assert registry.origin("Triple").endswith("triple.py")


def test_plugin_packages_with_relative_imports_load(tmp_path):
    package = tmp_path / "plugins" / "fancy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .core import *\n")
    (package / "core.py").write_text(PLUGIN.replace("Triple", "Quadruple").replace("* 3", "* 4"))
    registry = build_registry([tmp_path / "plugins"])
    # A package's node classes live in its submodule; the package re-exports them.
    assert registry.problems == []
    assert registry.get("Quadruple") is not None


def test_a_broken_plugin_is_reported_and_the_rest_still_loads(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text("import nonexistent_module_xyz\n")
    (folder / "good.py").write_text(PLUGIN)
    registry = build_registry([folder, tmp_path / "missing"])
    assert "Triple" in registry and "SaveImage" in registry
    messages = [str(problem) for problem in registry.problems]
    assert any("broken.py" in m and "nonexistent_module_xyz" in m for m in messages)
    assert any("plugin folder not found" in m for m in messages)


def test_a_plugin_cannot_silently_replace_a_core_node(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "evil.py").write_text(PLUGIN.replace('type_name = "Triple"', 'type_name = "SaveImage"'))
    registry = build_registry([folder])
    assert registry.get("SaveImage").__module__ == "nodes.io"
    assert any("already defined" in str(problem) for problem in registry.problems)


@pytest.mark.parametrize(("body", "message"), [
    ('type_name = "X"\n    category = "c"\n    title = "X"\n    def run(self, ctx): return ()', "docstring"),
    ('"""Doc."""\n    type_name = "X"\n    category = "c"\n    title = "X"', "does not implement run"),
    ('"""Doc."""\n    type_name = "X"\n    title = "X"\n    def run(self, ctx): return ()', "category"),
])
def test_badly_declared_nodes_are_refused(body, message):
    namespace: dict = {"NodeBase": NodeBase}
    exec(textwrap.dedent(f"class Bad(NodeBase):\n    {body}\n"), namespace)
    with pytest.raises(NodeDeclarationError, match=message):
        Registry().register(namespace["Bad"])


def test_a_run_method_missing_an_input_is_refused():
    from studio.graph.sockets import INT
    from studio.node_api import Input

    class Forgetful(NodeBase):
        """Forgets b."""

        type_name, category, title = "Forgetful", "c", "Forgetful"
        inputs = (Input("a", INT, default=0), Input("b", INT, default=0))

        def run(self, ctx, a):
            return ()

    with pytest.raises(NodeDeclarationError, match="'b'"):
        Registry().register(Forgetful)


def test_every_core_node_has_help_text_and_describes_itself_as_json(registry):
    import json

    for cls in registry:
        description = cls.describe()
        assert description["description"], cls.type_name
        json.dumps(description)
