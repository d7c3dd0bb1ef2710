"""The shipped toy critic's gradient points where its question does (a small run of ``bench/critic_gradient.py``).

Held-out scenes are rendered with an object in the wrong colour and encoded with the shipped toy VAE. Gradient ascent
of the critic's reward through the VAE decoder (DRF's path), toward the prompt (the asked colour) and toward a control
prompt (a third colour), must recolour the object as the pixel oracle reads it in most cases toward the asked colour
and in fewer toward the control, and must change the objects' pixels far more than the floor's and sky's. A critic
that raises its reward with speckle over the whole frame fails both. The full measurement (more cases, the count,
position and size families, a picture) is the bench.
"""

from __future__ import annotations

import pytest

from bench.critic_gradient import load_models, measure_family
from drf.toyworld.assets import toy_critic_path, toy_vae_path

CASES = 3
STEPS = 4
LR = 0.25  # steps along the gradient at unit RMS: 4 x 0.25 moves the latents by 1.0 of their spread (RMS)
SEED = 1  # the bench's own default stream is seed 0
# Mean change per pixel outside the objects over inside. The asked scene's own round trip (what a perfect ascent
# reaches) measures 0.02 with world v2's VAE and 0.05-0.07 with the first world's (bench: ideal out/in, colour, count
# and position); ascents of world v2's critic 0.24-0.46 and of the first world's 0.33-0.63, painting patches and
# speckle over the floor. 0.2 leaves a good critic several times the ideal's spill.
OUT_IN_MAX = 0.2

pytestmark = pytest.mark.xfail(
    strict=True,
    reason="the shipped critic's gradient paints the floor: toward the asked colour it recolours none of the 3 "
    "objects, toward a third colour none either, and changes the floor per pixel at 0.46 of the objects' rate",
)


@pytest.fixture(scope="module")
def colour_result():
    models = load_models(toy_critic_path(), toy_vae_path())
    result = measure_family(models, "color", CASES, STEPS, LR, "grad", SEED)
    assert result["n"] == CASES, f"only {result['n']} usable colour cases in {result['tried']} scenes"
    return result


def test_ascent_toward_the_asked_colour_recolours_most_objects_and_more_than_toward_another(colour_result):
    cases = colour_result["cases"]
    right = sum(c["flip_right"] for c in cases)
    control = sum(c["flip_control"] for c in cases)
    assert right * 2 > len(cases) and right > control, [(c["asked"], c["flip_right"], c["flip_control"]) for c in cases]


def test_ascent_changes_the_objects_far_more_than_the_rest_of_the_frame(colour_result):
    cases = colour_result["cases"]
    outside = sum(c["outside_right"] for c in cases) / len(cases)
    inside = sum(c["inside_right"] for c in cases) / len(cases)
    assert outside < OUT_IN_MAX * inside, (outside, inside)
