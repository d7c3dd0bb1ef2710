"""LLM decomposer: a chat causal LM writes the questions as JSON; the answer is validated against the schema.

A language model catches what word lists miss in free text, but its output is untrusted: the answer is parsed,
every question is validated, and an invalid answer is sent back with the error for a bounded number of retries.
After that the config decides: fall back to the rule decomposer, or raise a QuestionError.

The generator is any callable ``messages -> str`` (chat messages as ``[{"role", "content"}]``), so tests can script
answers; :class:`HFGenerator` wraps any transformers ``AutoModelForCausalLM`` with a chat template.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from drf.errors import ModelLoadError, QuestionError
from drf.hub import check_model_location
from prompts.config import QuestionsConfig
from prompts.fingerprint import fingerprint
from prompts.rule import decompose_rule
from prompts.schema import KINDS, Question, QuestionSet
from prompts.templates import make_environment, templates_digest
from prompts.tiny_lm import build_tiny_chat_lm

Generator = Callable[[list[dict[str, str]]], str]
logger = logging.getLogger(__name__)
EXAMPLE_PROMPT = "a small red cube left of a blue sphere, the camera pans right"
TINY_MAX_NEW_TOKENS = 32
SYSTEM_MESSAGE = "You write evaluation questions for generated videos. You answer with JSON only."


class HFGenerator:
    """Greedy chat generation with a transformers causal LM (deterministic, so a run's questions are reproducible)."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 768) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ModelLoadError("the llm decomposer's tokenizer has no chat template; use a chat/instruct model")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, path: str, max_new_tokens: int = 768) -> HFGenerator:
        """Load a local model folder or a hub id (from the local cache when offline; on the GPU when there is one;
        decomposition runs once per prompt per run)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = str(check_model_location(path, "questions.llm_model", "config.json"))
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").eval()
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(
                f"questions.llm_model {path!r} could not be loaded as a causal LM ({first}); give a chat model's "
                "folder or hub id"
            ) from None
        if torch.cuda.is_available():
            model = model.to("cuda")
        return cls(model, tokenizer, max_new_tokens)

    def __call__(self, messages: list[dict[str, str]]) -> str:
        import torch

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.model.device)
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)


@functools.lru_cache(maxsize=2)
def load_generator(model: str, max_new_tokens: int) -> Generator:
    """The generator for ``questions.llm_model``, loaded once per process ("tiny" builds a random offline model)."""
    if model == "tiny":
        # Its answers are noise whatever their length; a short budget keeps the retry/fallback path quick.
        return HFGenerator(*build_tiny_chat_lm(), max_new_tokens=min(max_new_tokens, TINY_MAX_NEW_TOKENS))
    return HFGenerator.from_pretrained(model, max_new_tokens=max_new_tokens)


def extract_json(text: str) -> Any:
    """The first JSON value in ``text`` (code fences and chatter around it are ignored)."""
    text = re.sub(r"```(?:json)?", "", text)
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise QuestionError("the answer contains no JSON object")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, min(starts))
    except json.JSONDecodeError as err:
        if _is_cut_off(text[min(starts) :]):
            raise QuestionError("the JSON is cut off before it closes (answer shorter, or raise max_new_tokens)") from None
        raise QuestionError(f"invalid JSON ({err.msg}) at character {err.pos}") from None
    return value


def _is_cut_off(text: str) -> bool:
    """True when brackets or a string are still open at the end: the model ran out of tokens mid-answer."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return False
    return depth > 0 or in_string


def parse_questions(text: str, prompt: str, aspects: list[str]) -> list[Question]:
    """Validated questions from an llm answer; any problem raises QuestionError with a message fit to feed back."""
    data = extract_json(text)
    raw = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        raise QuestionError('expected {"questions": [...]} with a list of questions')
    if not raw:
        raise QuestionError("the question list is empty")
    questions = []
    for index, item in enumerate(raw):
        if isinstance(item, dict):
            item = {"template": "llm", **item}
        questions.append(Question.from_dict(item, where=f"question {index}"))
    QuestionSet(prompt=prompt, questions=questions)  # duplicate ids
    kept = [q for q in questions if q.aspect in aspects]
    if not kept:
        raise QuestionError(f"no question has one of the requested aspects ({', '.join(aspects)})")
    return kept


@functools.lru_cache(maxsize=4)
def _example_answer(templates_dir: str) -> str:
    example = decompose_rule(EXAMPLE_PROMPT, QuestionsConfig(templates_dir=templates_dir, aspects=["alignment"]))
    keep = ("id", "aspect", "kind", "text", "expected", "options")
    first_of_family: dict[str, Question] = {}
    for q in example.questions:
        first_of_family.setdefault(".".join(q.id.split(".")[:2]), q)
    items = [{k: v for k, v in q.to_dict().items() if k in keep and v != []} for q in first_of_family.values()]
    return json.dumps({"questions": items}, ensure_ascii=False)


def instruction(prompt: str, config: QuestionsConfig, error: str | None = None) -> str:
    """The user message: the instruction template rendered for ``prompt`` (or the retry message after ``error``)."""
    template = make_environment(config.templates_dir).get_template("_llm_instruction.j2")
    return template.render(
        prompt=prompt,
        aspects=config.active_aspects(),
        kinds=list(KINDS),
        example_prompt=EXAMPLE_PROMPT,
        example=_example_answer(config.templates_dir),
        error=error,
    ).strip()


def inputs(config: QuestionsConfig) -> dict[str, str]:
    """What the questions depend on besides the config and the model: the instruction and fallback templates."""
    return {"templates": templates_digest(config.templates_dir)}


def decompose_llm(prompt: str, config: QuestionsConfig, generator: Generator | None = None) -> QuestionSet:
    """Ask the model, validate, retry with the error up to ``config.max_retries`` times, then fall back or raise."""
    generator = generator or load_generator(config.llm_model, config.max_new_tokens)
    messages = [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": instruction(prompt, config)}]
    error = ""
    for _attempt in range(1 + config.max_retries):
        answer = generator(messages)
        try:
            questions = parse_questions(answer, prompt, config.active_aspects())
        except QuestionError as err:
            error = str(err)
            messages = messages + [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": instruction(prompt, config, error=error)},
            ]
            continue
        return QuestionSet(prompt=prompt, questions=questions, decomposer="llm", config_hash=fingerprint(config, inputs(config)))
    attempts = 1 + config.max_retries
    if config.fallback == "rule":
        logger.warning("llm decomposer gave no valid questions in %d attempts (%s); using the rule decomposer for %r",
                       attempts, error, prompt)  # fmt: skip
        qset = decompose_rule(prompt, config)
        qset.decomposer = "rule (llm fallback)"
        return qset
    raise QuestionError(
        f"llm decomposer ({config.llm_model}) gave no valid questions for {prompt!r} in {attempts} attempts; "
        f"last problem: {error}; set questions.fallback=rule or use another model"
    )
