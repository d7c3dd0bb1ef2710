"""GeometryOutput: one layout, checked once, with errors that say which field is wrong and how."""

import pytest
import torch

from drf.errors import InputError, ModelLoadError
from drf.geometry.output import GeometryOutput
from drf.geometry.teacher import FoundationTeacher, Teacher, vggt_teacher


def _geom(batch=2, frames=3, h=4, w=5, static=True) -> GeometryOutput:
    return GeometryOutput(
        torch.eye(4).expand(batch, frames, 4, 4), torch.ones(batch, frames, h, w),
        torch.eye(3).expand(batch, frames, 3, 3), torch.ones(batch, frames, h, w) if static else None,
    )


def test_shapes_and_frame_selection():
    g = _geom()
    assert (g.batch_size, g.num_frames, g.size) == (2, 3, (4, 5))
    sub = g.frames([0, 2])
    assert sub.num_frames == 2 and sub.static.shape == (2, 2, 4, 5)
    assert GeometryOutput.cat([g, g]).batch_size == 4


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("c2w", torch.eye(4).expand(2, 3, 4, 4)[..., :3, :], r"c2w must be \[B,N,4,4\], got shape \[2, 3, 3, 4\]"),
        ("depth", torch.ones(2, 3, 4), r"depth must be \[B,N,h,w\]"),
        ("intrinsics", torch.eye(3).expand(2, 2, 3, 3), r"intrinsics has \[B,N\] = \[2, 2\] but c2w has \[2, 3\]"),
        ("static", torch.ones(2, 3, 4, 4), r"static has shape \[2, 3, 4, 4\] but depth has \[2, 3, 4, 5\]"),
        ("depth", [[1.0]], "depth must be a torch.Tensor"),
    ],
)
def test_wrong_layouts_fail_naming_the_field(field, value, message):
    g = _geom()
    kwargs = dict(c2w=g.c2w, depth=g.depth, intrinsics=g.intrinsics, static=g.static)
    kwargs[field] = value
    with pytest.raises(InputError, match=message):
        GeometryOutput(**kwargs)


def test_cat_refuses_mixed_static_masks():
    with pytest.raises(InputError, match="some outputs carry a static mask"):
        GeometryOutput.cat([_geom(), _geom(static=False)])


def test_foundation_teacher_without_its_package_says_what_to_install():
    with pytest.raises(ModelLoadError, match="needs the 'vggt' package.*pip install vggt"):
        vggt_teacher(device="cpu")
    with pytest.raises(ModelLoadError, match="needs the 'no_such_geometry_model' package"):
        FoundationTeacher("no_such_geometry_model", load=lambda m: m, predict=lambda m, f: {})


def test_foundation_teacher_adapts_any_predict_function():
    def predict(model, frames):
        t = frames.shape[0]
        eye = torch.eye(4).expand(t, 4, 4)
        return {"c2w": eye, "depth": frames[:, 0] + 1, "intrinsics": torch.eye(3).expand(t, 3, 3)}

    teacher = FoundationTeacher("math", load=lambda module: module, predict=predict, device="cpu")
    out = teacher(torch.rand(2, 3, 3, 8, 8))
    assert isinstance(teacher, Teacher) and out.depth.shape == (2, 3, 8, 8) and out.static is None
