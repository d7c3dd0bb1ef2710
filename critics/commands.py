"""``drf score``: ask the critic a prompt's questions about existing videos and show its answers.

Imports only argparse at load time; the handler imports the library.
"""

from __future__ import annotations

import argparse


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
    p.add_argument("--critic", default="", help="YAML critic config (a critic: section or a bare one); default: tiny")
    p.add_argument("--max-frames", type=int, default=16, help="frames kept per video, evenly spaced (default: 16)")
    p.add_argument("--explain", action="store_true", help="also generate the critic's explanation per question")
    p.add_argument("--format", choices=("table", "json"), default="table", help="default: table")
    p.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    import json
    import sys

    from critics.scorecard import load_videos, score_videos
    from drf.errors import InputError

    if args.max_frames < 1:
        raise InputError(f"--max-frames is {args.max_frames}; it must be >= 1")
    videos = load_videos(args.video, args.max_frames)
    results, notes = score_videos(videos, args.prompt, args.questions, args.critic, args.explain)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(results, indent=2))
    else:
        from critics.scorecard import format_table

        print("\n\n".join(format_table(r, args.explain) for r in results))
    return 0
