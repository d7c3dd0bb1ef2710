"""The context question templates read: rule-parser slots turned into records that are ready to word.

The deterministic logic (readable keys, unambiguous references, counterfactual subjects, opposite directions) lives
here, so templates only choose words. Names a template can read:

- ``prompt``: the prompt text; ``negatives``: whether counterfactual questions are wanted
- ``subjects``: [{key, noun, plural, color, size, count, attributes, phrase "small red cube", a "a small red cube" /
  "two red cubes", the "the small red cube", unsized "the red cube" (none when only size tells subjects apart), be "is"/"are", does "does"/"do",
  ref (a colour-free unique reference such as "the cube", or none), facts}]
- ``counts``: [{noun, plural, count, options, facts}] — one per noun whose count is known
- ``objects``: none or {count, word "two", facts} — how many objects the prompt names in all, when every subject is
  a toy shape with a known count (the answer of "how many objects are there?")
- ``absent``: subject-like records that are *not* in the prompt (colour swaps, missing toy shapes), for "no" questions
- ``motions``: [{subject, direction, phrase "to the left", opposite {direction, phrase} or none, facts}]
- ``actions``: [{subject or none, verb, facts}]
- ``relations``: [{relation, a, b, phrase "to the left of", opposite {relation, phrase} or none, facts}]
- ``camera``: none or {id "pan_right", phrase "pan right", question "pan to the right", opposite or none, facts};
  ``camera_options``: the choice options for camera motion
- ``setting``: none or {name, key, phrase "on a checkered floor", facts}; ``style``: [{name, key, facts}]
- ``pairs``: [{a, b}] every pair among the first ``PAIR_SUBJECTS`` subjects (a question per pair of all subjects
  would grow with the square of a long prompt's length)
- ``caption``: the prompt cut to its first ``CAPTION_WORDS`` words, the reference answer of a caption question (a dense
  answer's reward sums over its tokens, so a whole long prompt would outweigh every other question)
- ``question``: the call that writes a question (see ``prompts.templates``)
- filter ``stop_word_weights``: ``prompt | stop_word_weights`` maps the stop words of a dense answer to a low weight,
  so its likelihood reward is carried by the content words (the critic weighs the other words 1.0)
- filter ``combine``: ``facts | combine({"motion": "left"})`` is a copy of ``facts`` with the given keys replaced
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from drf.errors import InputError
from prompts.words import COLORS, TOY_COLORS, TOY_SHAPES, plural_of

CONTEXT_NAMES = frozenset(
    "prompt negatives subjects counts objects absent motions actions relations camera camera_options setting style "
    "pairs caption question".split()
)
PAIR_SUBJECTS = 4
CAPTION_WORDS = 40
CAMERA_PHRASES = {
    "pan_left": ("pan left", "pan to the left"),
    "pan_right": ("pan right", "pan to the right"),
    "dolly_in": ("dolly in", "move in toward the scene"),
    "dolly_out": ("dolly out", "move back away from the scene"),
    "orbit_left": ("orbit left", "orbit to the left around the scene"),
    "orbit_right": ("orbit right", "orbit to the right around the scene"),
    "static": ("static", "stay still"),
}
_OPPOSITE_CAMERA = {
    "pan_left": "pan_right", "pan_right": "pan_left", "dolly_in": "dolly_out", "dolly_out": "dolly_in",
    "orbit_left": "orbit_right", "orbit_right": "orbit_left",
}  # fmt: skip
_MOTION_PHRASES = {
    "left": "to the left",
    "right": "to the right",
    "toward": "toward the camera",
    "away": "away from the camera",
}
_OPPOSITE_MOTION = {"left": "right", "right": "left", "toward": "away", "away": "toward"}
_RELATION_PHRASES = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "in_front_of": "in front of",
    "behind": "behind",
    "next_to": "next to",
    "above": "above",
    "below": "below",
}
_OPPOSITE_RELATION = {
    "left_of": "right_of", "right_of": "left_of", "in_front_of": "behind", "behind": "in_front_of",
    "above": "below", "below": "above",
}  # fmt: skip
_ON_SETTINGS = frozenset("floor ground beach street road table stage grass sand snow bridge field farm".split())
_NUMBER_WORDS = {
    1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
}  # fmt: skip


def _key_part(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _subject_view(facts: dict[str, Any], key: str) -> dict[str, Any]:
    words = [w for w in (facts.get("size"), facts.get("color")) if w]
    phrase = " ".join([*words, *facts.get("attributes", []), facts["noun"]])
    count = facts.get("count")
    many = count is not None and count > 1
    colour_attrs = [*([facts["color"]] if facts.get("color") else []), *facts.get("attributes", [])]
    noun = facts["plural"] if many else facts["noun"]
    if many:
        a = f"{_NUMBER_WORDS.get(count, str(count))} {' '.join([*words, *facts.get('attributes', []), noun])}"
    else:
        a = f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"
    return {
        "key": key,
        "noun": facts["noun"],
        "plural": facts["plural"],
        "color": facts.get("color"),
        "size": facts.get("size"),
        "count": count,
        "attributes": list(facts.get("attributes", [])),
        "phrase": phrase,
        "a": a,
        "the": " ".join(["the", *words, *facts.get("attributes", []), noun]),
        "unsized": " ".join(["the", *colour_attrs, noun]),
        "be": "are" if many else "is",
        "does": "do" if many else "does",
        "ref": None,
        "facts": dict(facts),
    }


def _subject_keys(subjects: list[dict[str, Any]]) -> list[str]:
    """Readable unique keys: colour_noun, then size_colour_noun where that collides, then a numeric suffix."""
    def key_of(s: dict[str, Any], with_size: bool) -> str:
        parts = [s.get("size") if with_size else None, s.get("color"), *s.get("attributes", []), s["noun"]]
        return _key_part("_".join(p for p in parts if p))

    keys = [key_of(s, False) for s in subjects]
    keys = [key_of(s, True) if keys.count(k) > 1 else k for s, k in zip(subjects, keys)]
    seen: dict[str, int] = {}
    unique = []
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
        unique.append(k if seen[k] == 1 and keys.count(k) == 1 else f"{k}_{seen[k]}")
    return unique


def _colour_free_ref(view: dict[str, Any], views: list[dict[str, Any]]) -> str | None:
    """"the cube" when it is the only cube, "the small cube" when size tells it apart, else none."""
    same_noun = [v for v in views if v["noun"] == view["noun"]]
    if view["count"] is not None and view["count"] > 1:
        return None
    if len(same_noun) == 1:
        return f"the {view['noun']}"
    if view["size"] and sum(v["size"] == view["size"] for v in same_noun) == 1:
        return f"the {view['size']} {view['noun']}"
    return None


def _absent(views: list[dict[str, Any]], all_toy: bool) -> list[dict[str, Any]]:
    """Deterministic counterfactual subjects: one colour swap per fully coloured noun (toy colours swap within the
    toy palette), one missing toy shape."""
    absent: list[dict[str, Any]] = []
    taken = {v["key"] for v in views}
    nouns = list(dict.fromkeys(v["noun"] for v in views))
    for noun in nouns:
        same = [v for v in views if v["noun"] == noun]
        if not all(v["color"] for v in same):
            continue
        used = {v["color"] for v in same}
        palette = TOY_COLORS if same[0]["color"] in TOY_COLORS else COLORS
        start = palette.index(same[0]["color"]) if same[0]["color"] in palette else 0
        swap = next((palette[(start + k) % len(palette)] for k in range(1, len(palette) + 1)
                     if palette[(start + k) % len(palette)] not in used), None)  # fmt: skip
        if swap is not None:
            facts = {"noun": noun, "plural": same[0]["plural"], "color": swap, "attributes": []}
            if noun in TOY_SHAPES:
                facts["shape"] = noun
            key = _key_part(f"{swap}_{noun}")
            if key not in taken:
                absent.append(_subject_view(facts, key))
    if all_toy and views:
        missing = [s for s in TOY_SHAPES if s not in nouns]
        if missing and missing[0] not in taken:
            facts = {"noun": missing[0], "plural": missing[0] + "s", "shape": missing[0], "attributes": []}
            absent.append(_subject_view(facts, missing[0]))
    return absent


SLOT_NAMES = ("prompt", "subjects", "motions", "actions", "relations", "camera", "setting", "style")


def normalize_slots(slots: dict[str, Any]) -> dict[str, Any]:
    """Hand-written slots (``drf templates render --slot``) completed with defaults and checked, naming the bad slot."""
    unknown = [k for k in slots if k not in SLOT_NAMES]
    if unknown:
        near = difflib.get_close_matches(unknown[0], SLOT_NAMES, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; slots are {', '.join(SLOT_NAMES)}"
        raise InputError(f"unknown slot {unknown[0]!r}{hint}")
    out = {"prompt": "a video", "subjects": [], "motions": [], "actions": [], "relations": [], "camera": None,
           "setting": None, "style": []} | dict(slots)  # fmt: skip
    for name in ("subjects", "motions", "actions", "relations", "style"):
        if not isinstance(out[name], list):
            raise InputError(f"slot {name!r} must be a list, got {out[name]!r}")
    subjects = []
    for i, subject in enumerate(out["subjects"]):
        if isinstance(subject, str):
            subject = {"noun": subject}
        if not isinstance(subject, dict) or not (subject.get("noun") or subject.get("shape")):
            raise InputError(f"slot subjects[{i}] needs a 'noun' (or 'shape'), got {subject!r}")
        noun = str(subject.get("noun") or subject["shape"])
        filled = {"noun": noun, "plural": plural_of(noun), "attributes": []} | subject
        if noun in TOY_SHAPES:
            filled["shape"] = noun
        subjects.append(filled)
    out["subjects"] = subjects
    for name, keys in (("motions", ("subject",)), ("relations", ("a", "b")), ("actions", ())):
        for i, entry in enumerate(out[name]):
            for key in keys:
                if not isinstance(entry, dict) or not isinstance(entry.get(key), int) or not 0 <= entry[key] < len(subjects):
                    raise InputError(f"slot {name}[{i}].{key} must be the index of a subject (0..{len(subjects) - 1})")
    if out["camera"] is not None and out["camera"] not in CAMERA_PHRASES:
        raise InputError(f"slot camera is {out['camera']!r}; expected one of {', '.join(CAMERA_PHRASES)}")
    for i, m in enumerate(out["motions"]):
        if m.get("direction") not in _MOTION_PHRASES:
            raise InputError(f"slot motions[{i}].direction must be one of {', '.join(_MOTION_PHRASES)}")
    for i, r in enumerate(out["relations"]):
        if r.get("relation") not in _RELATION_PHRASES:
            raise InputError(f"slot relations[{i}].relation must be one of {', '.join(_RELATION_PHRASES)}")
    return out


def build_context(slots: dict[str, Any], negatives: bool = True) -> dict[str, Any]:
    """Template context from rule-parser slots (see the module docstring for every name)."""
    subjects = list(slots.get("subjects", []))
    keys = _subject_keys(subjects)
    views = [_subject_view(s, k) for s, k in zip(subjects, keys)]
    ambiguous = [sum(v["unsized"] == view["unsized"] for v in views) > 1 for view in views]
    for view, unclear in zip(views, ambiguous):
        view["ref"] = _colour_free_ref(view, views)
        if unclear:
            view["unsized"] = None  # "a small red cube and a large red cube": only size tells them apart
    counts = []
    for noun in dict.fromkeys(v["noun"] for v in views):
        same = [v for v in views if v["noun"] == noun]
        if any(v["count"] is None for v in same):
            continue
        total = sum(v["count"] for v in same)
        options = ["1", "2", "3"] + ([str(total)] if total > 3 else [])
        counts.append({"noun": noun, "plural": same[0]["plural"], "count": total, "options": options,
                       "expected": str(total), "facts": {"noun": noun, "count": total}})  # fmt: skip
    motions = []
    for m in slots.get("motions", []):
        direction = m["direction"]
        opposite = _OPPOSITE_MOTION[direction]
        motions.append({
            "subject": views[m["subject"]], "direction": direction, "verb": m.get("verb", "moves"),
            "phrase": _MOTION_PHRASES[direction],
            "opposite": {"direction": opposite, "phrase": _MOTION_PHRASES[opposite]} if negatives else None,
            "facts": {"subject": views[m["subject"]]["facts"], "motion": direction},
        })  # fmt: skip
    actions = []
    for a in slots.get("actions", []):
        subject = views[a["subject"]] if a.get("subject") is not None else None
        facts = {"verb": a["verb"]} | ({"subject": subject["facts"]} if subject else {})
        actions.append({"subject": subject, "verb": a["verb"], "facts": facts})
    relations = []
    for r in slots.get("relations", []):
        rel, a, b = r["relation"], views[r["a"]], views[r["b"]]
        opposite = _OPPOSITE_RELATION.get(rel) if negatives else None
        relations.append({
            "relation": rel, "a": a, "b": b, "phrase": _RELATION_PHRASES[rel],
            "opposite": {"relation": opposite, "phrase": _RELATION_PHRASES[opposite]} if opposite else None,
            "facts": {"relation": rel, "a": a["facts"], "b": b["facts"]},
        })  # fmt: skip
    camera = None
    if slots.get("camera"):
        cid = slots["camera"]
        opposite = _OPPOSITE_CAMERA.get(cid) if negatives else None
        camera = {
            "id": cid, "phrase": CAMERA_PHRASES[cid][0], "question": CAMERA_PHRASES[cid][1],
            "opposite": {"id": opposite, "phrase": CAMERA_PHRASES[opposite][0],
                         "question": CAMERA_PHRASES[opposite][1]} if opposite else None,
            "facts": {"camera": cid},
        }  # fmt: skip
    setting = slots.get("setting")
    all_toy = bool(views) and all(v["noun"] in TOY_SHAPES for v in views)
    objects = None
    if all_toy and all(v["count"] is not None for v in views):
        total = sum(v["count"] for v in views)
        objects = {"count": total, "word": _NUMBER_WORDS.get(total, str(total)), "facts": {"count": total}}
    return {
        "prompt": slots.get("prompt", ""),
        "negatives": negatives,
        "subjects": views,
        "counts": counts,
        "objects": objects,
        "absent": _absent(views, all_toy) if negatives else [],
        "motions": motions,
        "actions": actions,
        "relations": relations,
        "camera": camera,
        "camera_options": [phrase for phrase, _ in CAMERA_PHRASES.values()],
        "setting": _setting_view(setting) if setting else None,
        "style": [{"name": s, "key": _key_part(s), "facts": {"style": s}} for s in slots.get("style", [])],
        "pairs": [{"a": a, "b": b} for i, a in enumerate(views[:PAIR_SUBJECTS]) for b in views[i + 1 : PAIR_SUBJECTS]],
        "caption": " ".join(slots.get("prompt", "").split()[:CAPTION_WORDS]),
    }


def _setting_view(name: str) -> dict[str, Any]:
    preposition = "on" if name.split()[-1] in _ON_SETTINGS else "in"
    article = "an" if name[0] in "aeiou" else "a"
    return {"name": name, "key": _key_part(name), "phrase": f"{preposition} {article} {name}", "facts": {"setting": name}}


STOP_WORD_WEIGHT = 0.2
_STOP_WORDS = frozenset(
    "a an the of on in at to and or is are with its it from by for as into onto while then there this that".split()
)


def stop_word_weights(text: str) -> dict[str, float]:
    """Word → weight for the stop words of ``text`` (lower-cased, as the critic matches them)."""
    words = dict.fromkeys(w.lower() for w in re.findall(r"\w+", text))
    return {w: STOP_WORD_WEIGHT for w in words if w in _STOP_WORDS}
