"""``drf inspect``: a self-contained HTML report (and a terminal summary) for a video or a run directory.

This is the one place in ``drf`` that composes critics and prompts, and it does so inside the handler, so ``drf``
itself never imports them. Only argparse and the trainers' plugin registry are imported at load time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trainers.plugins import register_reporter

# Every run ends with its HTML report (logging.report), written by the builder (imported only then).
register_reporter("report", "drf.report.builder:write_report")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="HTML report: per-question rewards, explanations, saliency heat maps, run curves",
        description="Write a self-contained HTML report for a video (mp4/gif/folder of frames) or a run directory, "
        "and print a summary.",
    )
    parser.add_argument("target", metavar="VIDEO_OR_RUN_DIR", help="a video file, a folder of frames, or runs/<name>")
    parser.add_argument("--prompt", default="", help="the video's prompt (videos only; decomposed into questions)")
    parser.add_argument("--questions", metavar="FILE", help="question file (YAML/JSONL) instead of decomposing")
    parser.add_argument(
        "--critic",
        metavar="CONFIG",
        help="YAML with a critic: section (default: a run's own critic; for a video the shipped toy critic when the "
        "prompt is in the toy world's vocabulary, else the tiny untrained one)",
    )
    parser.add_argument("--step", type=int, help="run directories: sample step to inspect (default: the latest)")
    parser.add_argument("--out", help="report path (default: report.html, or RUN_DIR/report.html)")
    parser.add_argument("--max-videos", type=int, default=2, help="run directories: samples inspected in depth")
    parser.add_argument("--samples", type=int, default=1, help="SmoothGrad noise samples per heat map (1 = plain)")
    parser.add_argument("--noise", type=float, default=0.05, help="SmoothGrad noise standard deviation")
    parser.add_argument("--smooth", type=int, default=3, help="odd box-blur size of heat maps (1 = none)")
    parser.add_argument("--max-frames", type=int, default=16, help="videos: frames the critic sees, evenly spaced")
    parser.add_argument("--frames", type=int, default=4, help="frames shown per question")
    parser.add_argument("--no-saliency", action="store_true", help="skip the gradient heat maps")
    parser.add_argument("--no-explain", action="store_true", help="skip the critic's generated explanations")
    parser.set_defaults(func=inspect_command)


def _options(args: argparse.Namespace):
    from drf.errors import InputError
    from drf.report.builder import SaliencyOptions

    if args.smooth < 1 or args.smooth % 2 == 0:
        raise InputError(f"--smooth is {args.smooth}; give an odd number >= 1 (1 = no smoothing)")
    for flag in ("samples", "frames", "max_frames"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} is {getattr(args, flag)}; it must be >= 1")
    return SaliencyOptions(samples=args.samples, noise_std=args.noise, kernel=args.smooth, frames=args.frames,
                           enabled=not args.no_saliency)  # fmt: skip


def _critic(args: argparse.Namespace, prompt: str):
    """The critic ``drf score`` would pick (``--critic``, else by the prompt), the notes that say which it is and
    the frame selection it was trained on."""
    from critics.commands import critic_for
    from drf.report.builder import load_critic_for

    choice = critic_for(prompt, args.critic or "")
    critic, notes = load_critic_for(choice.config)
    return critic, [f"scored with {choice.description}", *notes], choice.frames


def inspect_command(args: argparse.Namespace) -> int:
    from drf.errors import InputError
    from drf.report import builder
    from drf.run_dir import RunDir

    target = Path(args.target)
    if not target.exists():
        raise InputError(f"{target}: no such file or folder; give a video (mp4/gif/frames folder) or a run directory")
    options = _options(args)
    if RunDir(target).is_run():
        critic, notes, _ = _critic(args, "") if args.critic else (None, [], {})
        report = builder.report_for_run(target, critic=critic, step=args.step, max_videos=args.max_videos,
                                        saliency=options, explain=not args.no_explain)  # fmt: skip
        report.notes = notes + report.notes
        out = Path(args.out) if args.out else RunDir(target).report
    else:
        qset = builder.question_set_for(args.prompt, questions_file=args.questions)
        critic, notes, frames = _critic(args, qset.prompt)
        report = builder.report_for_video(target, critic=critic, question_set=qset, notes=notes, saliency=options,
                                          explain=not args.no_explain, max_frames=args.max_frames,
                                          frame_policy=frames)  # fmt: skip
        out = Path(args.out) if args.out else Path(RunDir.REPORT)
    builder.save_html(builder.build_report(report), out)
    print(builder.summarize(report))
    print(f"\nreport -> {out}")
    return 0
