"""The words the prompt parser and the question templates share: the toy world's vocabulary and English plurals.

A leaf module: the parser, the template context and the toy world read these lists, and nothing here reads them.
"""

from __future__ import annotations

TOY_SHAPES = ("cube", "sphere")
TOY_COLORS = ("red", "yellow", "green", "blue")
COLORS = (*TOY_COLORS, "purple", "orange", "cyan", "white")
RELATIONS = ("left_of", "right_of", "in_front_of", "behind", "next_to", "above", "below")
CAMERA_MOTIONS = ("pan_left", "pan_right", "dolly_in", "dolly_out", "orbit_left", "orbit_right", "static")

_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "person": "people", "child": "children", "fish": "fish", "sheep": "sheep",
    "deer": "deer", "mouse": "mice", "leaf": "leaves", "wolf": "wolves", "bus": "buses", "box": "boxes",
    "butterfly": "butterflies", "baby": "babies", "couple": "couples", "knife": "knives",
}  # fmt: skip


def plural_of(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"
