"""``drf questions`` and ``drf templates``: look at the questions a prompt becomes, and author templates safely.

Imports only argparse at load time; the handlers import the library.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    q = subparsers.add_parser(
        "questions",
        help="show the questions a prompt is decomposed into",
        description="Decompose PROMPT into the VQA questions the critic answers, and print them.",
    )
    q.add_argument("prompt", metavar="PROMPT", help="the text-to-video prompt")
    q.add_argument("--decomposer", choices=("rule", "llm", "file"), default="rule", help="default: rule")
    q.add_argument("--file", default="", help="YAML/JSONL question file (for --decomposer file)")
    q.add_argument("--llm-model", default="", help="causal LM folder or hub id, or 'tiny' (for --decomposer llm)")
    q.add_argument("--max-retries", type=int, default=2, help="llm retries after invalid JSON (default: 2)")
    q.add_argument("--fallback", choices=("rule", "error"), default="rule", help="when the llm fails (default: rule)")
    q.add_argument("--templates-dir", default="", help="question template folder (default: the packaged templates)")
    q.add_argument("--aspects", default="", help="comma-separated aspects to keep (default: all)")
    q.add_argument("--no-negatives", action="store_true", help="leave out counterfactual questions expected 'no'")
    q.add_argument("--max-questions", type=int, default=None,
                   help="refuse a prompt that yields more questions (default: a run's questions.max_questions)")
    q.add_argument("--format", choices=("table", "json", "yaml"), default="table", help="default: table")
    q.set_defaults(func=_questions)

    t = subparsers.add_parser("templates", help="lint or render question templates")
    tsub = t.add_subparsers(dest="templates_command", metavar="ACTION")
    lint = tsub.add_parser(
        "lint",
        help="check templates for syntax errors, undefined slots, missing answers and duplicate ids",
        description="Check every *.j2 in DIR; prints file:line: problem and exits 1 when any is found.",
    )
    lint.add_argument("dir", metavar="DIR", nargs="?", default="", help="template folder (default: packaged)")
    lint.set_defaults(func=_lint)
    render = tsub.add_parser(
        "render",
        help="render one template for given slots",
        description="Render TEMPLATE (a name such as 'alignment' or a path to a .j2 file) for slots taken from "
        "--prompt (parsed by the rule grammar) and/or --slot key=value (value in YAML, e.g. "
        "--slot 'subjects=[{noun: cube, color: red}]' --slot camera=pan_left).",
    )
    render.add_argument("template", metavar="TEMPLATE")
    render.add_argument("--slot", action="append", default=[], metavar="KEY=VALUE", help="set one slot (repeatable)")
    render.add_argument("--prompt", default=None, help="fill the slots by parsing this prompt first")
    render.add_argument("--dir", default="", help="template folder for a template given by name")
    render.add_argument("--no-negatives", action="store_true", help="leave out counterfactual questions")
    render.add_argument("--format", choices=("table", "json", "yaml"), default="table", help="default: table")
    render.set_defaults(func=_render)
    t.set_defaults(func=lambda args: (t.print_help(), 1)[1])


def _questions(args: argparse.Namespace) -> int:
    from prompts.config import QuestionsConfig
    from prompts.display import format_questions
    from prompts.registry import decompose
    from prompts.schema import ASPECTS

    aspects = [a.strip() for a in args.aspects.split(",") if a.strip()] if args.aspects else list(ASPECTS)
    config = QuestionsConfig(
        decomposer=args.decomposer,
        file=args.file,
        llm_model=args.llm_model,
        max_retries=args.max_retries,
        fallback=args.fallback,
        templates_dir=args.templates_dir,
        aspects=aspects,
        negatives=not args.no_negatives,
        **({} if args.max_questions is None else {"max_questions": args.max_questions}),
    )
    print(format_questions(decompose(args.prompt, config, cap="--max-questions"), args.format))
    return 0


def _lint(args: argparse.Namespace) -> int:
    from prompts.lint import lint_templates
    from prompts.templates import templates_dir

    problems = lint_templates(args.dir or None)
    for problem in problems:
        print(problem)
    folder = templates_dir(args.dir or None)
    print(f"{len(problems)} problem(s) in {folder}" if problems else f"ok: no problems in {folder}")
    return 1 if problems else 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from drf.errors import InputError
    from prompts.context import normalize_slots
    from prompts.display import format_questions
    from prompts.parse import parse_prompt
    from prompts.schema import QuestionSet
    from prompts.templates import render_template

    slots = parse_prompt(args.prompt) if args.prompt is not None else {}
    for item in args.slot:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--slot {item!r} must look like key=value")
        try:
            slots[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise InputError(f"--slot {key.strip()}: value is not valid YAML ({getattr(err, 'problem', err)})") from None
    slots = normalize_slots(slots)
    questions = render_template(args.template, slots, args.dir or None, negatives=not args.no_negatives)
    qset = QuestionSet(prompt=slots["prompt"], questions=questions, decomposer=f"template {args.template}")
    print(format_questions(qset, args.format))
    return 0
