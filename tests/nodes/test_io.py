from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nodes.io import LoadImage, PreviewImage, SaveImage, find_input_image, safe_output_folder
from studio.graph.png import WORKFLOW_TEXT_KEY, read_png_text
from studio.settings import Settings


def test_load_image_gives_rgb_in_0_1_and_transparency_as_mask(ctx, settings):
    rgba = Image.new("RGBA", (6, 4), (255, 0, 0, 255))
    rgba.putpixel((1, 2), (0, 0, 255, 0))
    rgba.save(settings.input_dirs[0] / "sprite.png")
    image, mask = LoadImage().run(ctx, image="sprite.png")
    assert image.shape == (1, 4, 6, 3) and image.dtype == torch.float32
    assert torch.equal(image[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert mask.shape == (1, 4, 6)
    assert mask[0, 2, 1] == 1.0 and mask.sum() == 1.0


def test_load_image_without_alpha_gives_an_empty_mask_of_its_size(ctx, settings):
    Image.new("RGB", (5, 3), (0, 255, 0)).save(settings.input_dirs[0] / "green.jpg", quality=100)
    image, mask = LoadImage().run(ctx, image="green.jpg")
    assert image.shape == (1, 3, 5, 3) and mask.shape == (1, 3, 5) and mask.sum() == 0


def test_load_image_reads_every_frame_of_an_animation(ctx, settings):
    frames = [Image.new("RGB", (4, 4), (value, value, value)) for value in (0, 128, 255)]
    frames[0].save(settings.input_dirs[0] / "anim.gif", save_all=True, append_images=frames[1:])
    image, mask = LoadImage().run(ctx, image="anim.gif")
    assert image.shape[0] == 3 and mask.shape[0] == 3


def test_load_image_checks_the_file_before_the_run(settings):
    assert LoadImage.check({"image": "nope.png"}, settings)[0][0] == "image"
    assert find_input_image("seed_sample.png", settings) is not None
    assert LoadImage.check({"image": "seed_sample.png"}, settings) == []


def test_load_image_cache_fingerprint_changes_when_the_file_changes(settings):
    path = settings.input_dirs[0] / "a.png"
    Image.new("RGB", (2, 2)).save(path)
    before = LoadImage.fingerprint({"image": "a.png"}, settings)
    Image.new("RGB", (3, 3)).save(path)
    assert LoadImage.fingerprint({"image": "a.png"}, settings) != before


def test_a_damaged_image_gives_an_error_naming_the_file(ctx, settings):
    (settings.input_dirs[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="broken.png is not an image"):
        LoadImage().run(ctx, image="broken.png")


def test_save_image_numbers_files_never_overwrites_and_embeds_the_workflow(ctx, settings):
    images = torch.rand(2, 4, 4, 3)
    SaveImage().run(ctx, images=images, filename_prefix="shots/cat")
    SaveImage().run(ctx, images=images[:1], filename_prefix="shots/cat")
    folder = settings.output_dir / "shots"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["cat_00001_.png", "cat_00002_.png", "cat_00003_.png"]
    assert [p.name for p in ctx.files] == names
    texts = read_png_text((folder / "cat_00001_.png").read_bytes())
    assert '"seed-studio-workflow"' in texts[WORKFLOW_TEXT_KEY]
    saved = torch.from_numpy(np.array(Image.open(folder / "cat_00002_.png"))).float() / 255
    assert torch.allclose(saved, images[1], atol=1 / 255)


def test_save_image_skips_numbers_taken_by_files_it_did_not_write(ctx, settings):
    settings.output_dir.mkdir(parents=True)
    (settings.output_dir / "x_00007_.png").write_bytes(b"precious")
    SaveImage().run(ctx, images=torch.rand(1, 2, 2, 3), filename_prefix="x")
    assert (settings.output_dir / "x_00007_.png").read_bytes() == b"precious"
    assert (settings.output_dir / "x_00008_.png").exists()


@pytest.mark.parametrize("prefix", ["../../x", "/etc/x", "..\\..\\x", "C:\\Windows\\x", "a/../../../x",
                                    "./../x", "...", ""])
def test_save_image_prefixes_cannot_leave_the_output_folder(ctx, settings, prefix):
    SaveImage().run(ctx, images=torch.rand(1, 2, 2, 3), filename_prefix=prefix)
    root = settings.output_dir.resolve()
    [written] = ctx.files
    assert root in written.resolve().parents


def test_a_symlink_inside_the_output_folder_cannot_lead_out(settings, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    settings.output_dir.mkdir(parents=True)
    (settings.output_dir / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermissionError, match="outside the output folder"):
        safe_output_folder(settings.output_dir, "link/x")


def test_preview_writes_to_the_temp_folder_not_the_output_folder(ctx, settings):
    PreviewImage().run(ctx, images=torch.rand(1, 2, 2, 3))
    [written] = ctx.files
    assert settings.temp_dir.resolve() in written.resolve().parents
    assert not settings.output_dir.exists()


@pytest.mark.parametrize("output_type", ["SaveImage", "PreviewImage"])
def test_save_and_preview_pass_their_images_on_and_still_write_the_file(registry, settings, output_type):
    from studio.engine import Engine
    from studio.graph import Workflow
    from studio.graph.sockets import IMAGE
    from studio.node_api import Input, NodeBase
    from studio.registry import Registry

    received = []

    class Receive(NodeBase):
        """Hands what it receives to the test."""

        type_name, category, title, is_output = "Receive", "test", "Receive", True
        inputs = (Input("image", IMAGE),)

        def run(self, ctx, image):
            received.append(image)
            return ()

    with_receiver = Registry()
    for cls in registry:
        with_receiver.register(cls)
    with_receiver.register(Receive)
    workflow = Workflow()
    source = workflow.add_node("EmptyImage", {"width": 8, "height": 4, "batch_size": 1, "color": 0xFF8000})
    stage = workflow.add_node(output_type)
    receiver = workflow.add_node("Receive")
    workflow.connect(source.id, "IMAGE", stage.id, "images")
    workflow.connect(stage.id, "images", receiver.id, "image")
    engine = Engine(with_receiver, settings)
    report = engine.run(workflow, targets=[source.id, receiver.id])
    assert report.ok, report.problems or report.errors
    [passed] = received
    assert passed is report.results[source.id][0]
    [(node_id, path)] = report.files
    assert node_id == stage.id and path.is_file()
    written = torch.from_numpy(np.array(Image.open(path))).float() / 255
    assert torch.allclose(written, passed[0], atol=1 / 255)


def test_saved_pixels_are_truncated_as_comfyui_saves_them():
    from studio.runtime.images import tensor_to_pil

    image = torch.tensor([[[0.999, 0.5, 0.0019]]])  # 254.7, 127.5, 0.48 in 8 bits
    assert list(tensor_to_pil(image).getpixel((0, 0))) == [254, 127, 0]


def test_load_image_reads_nothing_outside_the_input_folders(ctx, settings, tmp_path):
    # Beside the input folder: a real picture, reachable by ../ and by absolute path.
    Image.new("RGB", (2, 2)).save(tmp_path / "secret.png")
    for name in ("../secret.png", str(tmp_path / "secret.png"), "sub/../../secret.png"):
        [(input_name, message)] = LoadImage.check({"image": name}, settings)
        assert input_name == "image" and "is outside the input folders" in message
        with pytest.raises(FileNotFoundError, match="is outside the input folders"):
            LoadImage().run(ctx, image=name)
        assert LoadImage.fingerprint({"image": name}, settings) is None


def test_outside_an_existing_and_a_missing_file_give_the_same_sentence(settings, tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "exists.png")
    existing = LoadImage.check({"image": "../exists.png"}, settings)[0][1]
    missing = LoadImage.check({"image": "../missing.png"}, settings)[0][1]
    assert existing.replace("exists", "NAME") == missing.replace("missing", "NAME")
    existing = LoadImage.check({"image": str(tmp_path / "exists.png")}, settings)[0][1]
    missing = LoadImage.check({"image": str(tmp_path / "missing.png")}, settings)[0][1]
    assert existing.replace("exists", "NAME") == missing.replace("missing", "NAME")


def test_a_symlink_in_the_input_folder_cannot_lead_out(settings, tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "elsewhere.png")
    try:
        (settings.input_dirs[0] / "link.png").symlink_to(tmp_path / "elsewhere.png")
    except OSError:
        pytest.skip("this file system has no symbolic links")
    assert "is outside the input folders" in LoadImage.check({"image": "link.png"}, settings)[0][1]


def test_absolute_paths_inside_the_input_folders_work_and_elsewhere_only_when_allowed(ctx, settings, tmp_path):
    Image.new("RGB", (3, 2)).save(settings.input_dirs[0] / "inside.png")
    assert LoadImage.check({"image": str(settings.input_dirs[0] / "inside.png")}, settings) == []
    Image.new("RGB", (2, 5)).save(tmp_path / "outside.png")
    trusting = settings.replace(allow_absolute_image_paths=True)
    assert LoadImage.check({"image": str(tmp_path / "outside.png")}, trusting) == []
    assert LoadImage.check({"image": "../outside.png"}, trusting) != []  # ../ stays refused
    assert Settings.from_mapping({"allow_absolute_image_paths": True}).allow_absolute_image_paths
    assert not Settings().allow_absolute_image_paths


@pytest.mark.parametrize("kind", ["one huge frame", "many frames"])
def test_load_image_refuses_a_picture_too_large_for_memory_from_its_header(tmp_path, kind):
    """A 13000×13000 PNG of a few kilobytes, and an APNG of 300 frames of 1000², are refused
    before decoding, in a process limited to 1.5 GB (LoadImage took 6.8 GB for the first)."""
    import subprocess
    import sys

    from PIL import Image

    inputs = tmp_path / "input"
    inputs.mkdir(exist_ok=True)
    path = inputs / "bomb.png"
    if kind == "one huge frame":
        Image.new("1", (13000, 13000)).save(path)
    else:
        frames = [Image.new("1", (1000, 1000), color=index % 2) for index in range(300)]
        frames[0].save(path, save_all=True, append_images=frames[1:])
    assert path.stat().st_size < 200_000
    script = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
from pathlib import Path
from studio.settings import Settings
from nodes.io import LoadImage
from studio.engine import CancelToken, NodeContext
settings = Settings(input_dirs=(Path({str(inputs)!r}),))
ctx = NodeContext("1", "", settings, {{}}, CancelToken(), lambda *a: None, lambda: {{}})
try:
    LoadImage().run(ctx, "bomb.png")
except ValueError as error:
    print("refused:", error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("refused: bomb.png is "), result.stdout
    assert "LoadImage reads at most 67 megapixels" in result.stdout
