from studio.graph import NodeMode, Workflow
from studio.graph.diff import differences


def test_differences_name_each_changed_value_mode_wire_and_node():
    a = Workflow()
    a.add_node("Load", {"path": "x.png"})
    a.add_node("Sampler", {"seed": 1, "steps": 20}, title="Sampler")
    a.connect("1", "IMAGE", "2", "image")
    b = a.copy()
    b.set_value("2", "seed", 2)
    b.unset_value("2", "steps")  # back to its default, which is 20: no difference
    b.set_mode("1", NodeMode.BYPASS)
    b.disconnect("2", "image")
    b.add_node("Save")
    found = differences(a, b, lambda type_name: {"steps": 20} if type_name == "Sampler" else {})
    assert [(d.what, d.a, d.b) for d in found] == [
        ("mode", "normal", "bypass"), ("seed", 1, 2), ("wire into image", "#1.IMAGE", None), ("node", None, "Save")]
    assert differences(a, a.copy()) == []
