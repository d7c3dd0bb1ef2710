"""``drf score``: ask the critic a prompt's questions about existing videos and show its answers.

Imports only argparse at load time; the handler imports the library. Without ``--critic`` the critic follows the
prompt: the shipped toy critic for a prompt in the toy world's vocabulary, else the tiny untrained one
(:func:`critic_for`, which ``drf inspect`` shares).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score videos against a prompt's questions with a VLM critic",
        description="Score VIDEO_OR_DIR (an .mp4/.gif, a folder of frames, or a folder of videos) against the questions "
        "of --prompt and print, per video, each question's expected answer, p(expected), reward and weight.",
    )
    p.add_argument("video", metavar="VIDEO_OR_DIR", help="video file, folder of PNG/JPG frames, or folder of videos")
    p.add_argument("--prompt", required=True, help="the text-to-video prompt the videos should show")
    p.add_argument("--questions", default="", help="YAML/JSONL question file (default: the rule decomposer)")
    p.add_argument(
        "--critic",
        default="",
        help="YAML critic config (a critic: section or a bare one); default: the shipped toy critic for a prompt in "
        "the toy world's vocabulary, else the tiny untrained one",
    )
    p.add_argument("--max-frames", type=int, default=16, help="frames kept per video, evenly spaced (default: 16)")
    p.add_argument("--explain", action="store_true", help="also generate the critic's explanation per question")
    p.add_argument("--format", choices=("table", "json"), default="table", help="default: table")
    p.set_defaults(func=_score)


@dataclass(frozen=True)
class CriticChoice:
    """The critic a command scores with, what to tell the reader about it, and the frame selection it was trained
    on (``FramesConfig`` fields; empty: any)."""

    config: Any  # a CriticConfig; typed loosely so that loading this module (``drf --help``) imports no critic code
    description: str
    frames: dict[str, Any]


def in_toy_world(prompt: str) -> bool:
    """Whether ``prompt`` stays inside the toy world's vocabulary, as the rule parser (which the toy world's grammar
    writes for) reads it: objects of the world's shapes and colours, its object motions, relations and camera moves,
    its floor, and nothing the parser reads as an action, a style or another attribute."""
    from drf.toyworld import scene
    from drf.toyworld.grammar import SETTING
    from prompts.parse import parse_prompt

    if not prompt.strip():  # no prompt (questions from a file): nothing says which world the video is from
        return False
    slots = parse_prompt(prompt)
    objects_ok = all(
        s.get("shape") in scene.WORLD_SHAPES
        and s.get("color", scene.WORLD_COLORS[0]) in scene.WORLD_COLORS
        and not s.get("attributes")
        for s in slots["subjects"]
    )
    return (
        bool(slots["subjects"])
        and objects_ok
        and all(m["direction"] in scene.WORLD_OBJECT_MOTIONS for m in slots["motions"])
        and all(r["relation"] in scene.RELATIONS for r in slots["relations"])
        and slots["camera"] in (None, *scene.WORLD_CAMERA_MOTIONS)
        and (slots["setting"] is None or slots["setting"] in SETTING)
        and not slots["actions"]
        and not slots["style"]
    )


def critic_for(prompt: str, critic_file: str) -> CriticChoice:
    """The critic named by ``critic_file``, else the shipped toy critic when ``prompt`` is in the toy world's
    vocabulary (scored the way it was trained: its resolution and frames, from its manifest), else the tiny
    untrained one."""
    from critics.config import CriticConfig, critic_config_from_file, default_critic_config

    if critic_file:
        config = critic_config_from_file(critic_file)
        return CriticChoice(config, f"{critic_file} ({config.family} {config.path or 'tiny'})", {})
    if in_toy_world(prompt):
        from drf.toyworld.assets import toy_critic_frames, toy_critic_path, toy_critic_settings

        config = CriticConfig(path=str(toy_critic_path()), **toy_critic_settings())
        why = "the prompt is in the toy world's vocabulary; --critic CONFIG picks another"
        return CriticChoice(config, f"the shipped toy critic ({why})", toy_critic_frames())
    why = "the prompt is outside the toy world's vocabulary and no --critic was given"
    return CriticChoice(default_critic_config(), f"the tiny untrained critic, random weights ({why})", {})


def _score(args: argparse.Namespace) -> int:
    import json

    from critics.scorecard import format_table, load_videos, score_videos
    from drf.errors import InputError
    from drf.table import wrap_text

    if args.max_frames < 1:
        raise InputError(f"--max-frames is {args.max_frames}; it must be >= 1")
    choice = critic_for(args.prompt, args.critic)
    videos = load_videos(args.video, args.max_frames, choice.frames)
    results = score_videos(videos, args.prompt, args.questions, choice.config, args.explain)
    if args.format == "json":
        print(json.dumps([{**r, "critic": choice.description} for r in results], indent=2))
        return 0
    print("\n".join(wrap_text(f"critic: {choice.description}", indent="  ")))
    for result in results:
        print(f"\n{format_table(result, args.explain)}")
    return 0
