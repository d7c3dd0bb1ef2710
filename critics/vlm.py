"""Scoring machinery shared by the Hugging Face VLM critics: prompts, teacher-forced rows and the shared prefix.

A family adapter only says how frames become vision inputs and features, which placeholder token stands for them, and
how positions are numbered; everything else (rendering the chat prompt, turning questions into teacher-forced rows,
running the video prefix once and expanding its KV cache over every question, reading rewards off the log-probs,
generating explanations) lives here once.

The shared prefix assembles the input embeddings itself (token embeddings with the vision features scattered into the
placeholders) and calls the language model directly; ``test_shared_prefix`` checks it against the official
``model(**inputs)`` forward, one question at a time.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import torch

from critics.base import Critic, CriticOutput
from critics.config import CriticConfig
from critics.scoring import answer_token_ids, binary_reward, choice_reward, dense_reward, token_weights
from drf.errors import CriticError, InputError, TemplateError
from drf.text import clean_text
from prompts.schema import Question, QuestionSet

TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass
class VisionInputs:
    """One video's vision inputs, differentiable with respect to its frames.

    ``model_inputs`` are the keyword arguments the official forward takes (pixel values, grids); ``counts`` is how many
    tokens each placeholder in the prompt expands to, in prompt order.
    """

    model_inputs: dict[str, torch.Tensor]
    counts: list[int]


@dataclass
class _Row:
    """One teacher-forced sequence: a question's prompt plus an optional continuation (option or dense answer)."""

    ids: list[int]
    prompt_len: int
    weights: list[float] = field(default_factory=list)

    @property
    def targets(self) -> list[int]:
        return self.ids[self.prompt_len :]


def load_template(path: str | Path) -> jinja2.Template:
    """Parse a chat prompt template; syntax errors name file:line."""
    path = Path(path)
    try:
        source = path.read_text()
    except OSError as err:
        raise TemplateError(f"{path}: cannot read the critic prompt template ({err.strerror})") from None
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"{path}:{err.lineno}: {err.message}") from None


def _common_prefix_len(rows: Sequence[list[int]]) -> int:
    first = rows[0]
    n = min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != first[i] for r in rows):
            return i
    return n


class HFVisionCritic(Critic):
    """Base class of the transformers-backed critics; subclasses implement the family hooks below."""

    template_name: str = ""

    def __init__(self, model, tokenizer, config: CriticConfig):
        model.requires_grad_(False)
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.template_path = (
            Path(config.prompt_template) if config.prompt_template else TEMPLATE_DIR / self.template_name
        )
        self.template = load_template(self.template_path)
        self._yes_no: tuple[list[int], list[int]] | None = None
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else 0

    # ---- family hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def vision_placeholder(self, num_frames: int) -> str:
        """Prompt text standing for the frames (each placeholder token is later expanded to its feature count)."""

    @property
    @abstractmethod
    def placeholder_id(self) -> int:
        """Token id whose occurrences receive the vision features."""

    @abstractmethod
    def prepare_vision(self, frames: torch.Tensor) -> VisionInputs:
        """frames [T,3,H,W] in [0,1] -> vision inputs (differentiable)."""

    @abstractmethod
    def vision_features(self, vision: VisionInputs) -> torch.Tensor:
        """Vision inputs -> features [N, D] in placeholder order (N = sum of counts)."""

    @abstractmethod
    def position_ids(self, ids: torch.Tensor, attention_mask: torch.Tensor, vision: VisionInputs) -> torch.Tensor:
        """Positions for ids [R,L] (right-padded) as the language model takes them."""

    def official_kwargs(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra keyword arguments the official forward needs besides input ids and vision inputs."""
        return {}

    # ---- prompts --------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def render(self, question: Question, num_frames: int, mode: str) -> str:
        try:
            return self.template.render(
                system=self.config.system_prompt,
                vision=self.vision_placeholder(num_frames),
                question=question.text,
                kind=question.kind,
                options=question.options,
                mode=mode,
            )
        except jinja2.UndefinedError as err:
            raise TemplateError(
                f"{self.template_path}: {err.message}; the critic template may use system, vision, "
                "question, kind, options, mode"
            ) from None

    def prompt_ids(self, question: Question, vision: VisionInputs, num_frames: int, mode: str = "score") -> list[int]:
        """Tokenised prompt with each placeholder token expanded to its feature count."""
        ids = self.tokenizer(self.render(question, num_frames, mode))["input_ids"]
        slots = [i for i, t in enumerate(ids) if t == self.placeholder_id]
        if len(slots) != len(vision.counts):
            raise TemplateError(
                f"{self.template_path}: the rendered prompt holds {len(slots)} vision placeholders, expected "
                f"{len(vision.counts)}; keep {{{{ vision }}}} exactly once in the template"
            )
        expanded: list[int] = []
        for i, token in enumerate(ids):
            if token == self.placeholder_id:
                expanded.extend([token] * vision.counts[slots.index(i)])
            else:
                expanded.append(token)
        return expanded

    def rows_for(self, question: Question, prompt: list[int]) -> list[_Row]:
        """Teacher-forced rows of one question: one for binary and dense, one per option for choice."""
        if question.kind == "binary":
            return [_Row(prompt, len(prompt))]
        if question.kind == "choice":
            return [_Row(prompt + self._continuation(o)[0], len(prompt)) for o in question.options]
        if question.kind == "dense":
            ids, offsets = self._continuation(question.expected)
            weights = token_weights(question.expected, offsets, question.token_weights)
            return [_Row(prompt + ids, len(prompt), weights)]
        raise CriticError(
            f"question {question.id!r}: kind {question.kind!r} cannot be answered by this critic; "
            "supported kinds are binary, choice, dense"
        )

    def _continuation(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if not enc["input_ids"]:
            raise CriticError(f"answer {text!r} tokenises to nothing; give a non-empty answer")
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    # ---- forward passes ------------------------------------------------------------------------------------------
    def _pad(self, rows: Sequence[_Row]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(r.ids) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r.ids)] = torch.tensor(r.ids)
            mask[i, : len(r.ids)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _embed(self, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        embeds = self.model.get_input_embeddings()(ids)
        slots = (ids == self.placeholder_id).unsqueeze(-1)
        feats = features.to(embeds.dtype).repeat(ids.shape[0], 1)
        return embeds.masked_scatter(slots, feats)

    def _hidden_shared(
        self, rows: Sequence[_Row], vision: VisionInputs, features: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """Run the common prefix once, expand its KV cache over the rows, then run every row's remainder.

        Returns hidden states [R, L - P, D] and the prefix length P. P stops before each row's first scored position,
        so every needed hidden state comes from the batched remainder.
        """
        ids, mask = self._pad(rows)
        embeds = self._embed(ids, features)
        positions = self.position_ids(ids, mask, vision)
        prefix = min(_common_prefix_len([r.ids for r in rows]), min(r.prompt_len for r in rows) - 1)
        lm = self.model.model.language_model
        if prefix <= 0:
            return lm(inputs_embeds=embeds, position_ids=positions, attention_mask=mask).last_hidden_state, 0
        cache = lm(inputs_embeds=embeds[:1, :prefix], position_ids=positions[..., :1, :prefix], use_cache=True)
        cache = cache.past_key_values
        cache.batch_repeat_interleave(len(rows))
        out = lm(
            inputs_embeds=embeds[:, prefix:],
            position_ids=positions[..., prefix:],
            past_key_values=cache,
            use_cache=True,
        )
        return out.last_hidden_state, prefix

    def _row_logprobs(
        self, rows: Sequence[_Row], vision: VisionInputs, features: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Log-probs [n_i, V] at each row's scored positions (prompt end, then each continuation token).

        Float32 (float64 for a float64 model). With ``features`` the shared prefix is used; without, the official
        forward runs once per row, vision tower included.
        """
        if features is not None:
            hidden, offset = self._hidden_shared(rows, vision, features)
            picked = [
                hidden[i, r.prompt_len - 1 - offset : (len(r.ids) - 1 if r.targets else r.prompt_len) - offset]
                for i, r in enumerate(rows)
            ]
            logits = [self.model.lm_head(h) for h in picked]
        else:
            logits = []
            for r in rows:
                ids = torch.tensor([r.ids], device=self.device)
                out = self.model(input_ids=ids, **vision.model_inputs, **self.official_kwargs(ids))
                end = len(r.ids) - 1 if r.targets else r.prompt_len
                logits.append(out.logits[0, r.prompt_len - 1 : end])
        return [torch.log_softmax(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1) for x in logits]

    def _chunked_logprobs(
        self, rows: Sequence[_Row], vision: VisionInputs, features: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """``_row_logprobs`` of all ``rows``, at most ``config.max_rows`` per forward, rows of similar length together
        (less padding); the same values as one forward up to float reassociation."""
        order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
        out: list[torch.Tensor | None] = [None] * len(rows)
        for start in range(0, len(order), self.config.max_rows):
            chunk = order[start : start + self.config.max_rows]
            for i, logprobs in zip(chunk, self._row_logprobs([rows[i] for i in chunk], vision, features)):
                out[i] = logprobs
        return out

    # ---- the Critic protocol --------------------------------------------------------------------------------------
    def _check_frames(self, frames: torch.Tensor, question_sets: Sequence[QuestionSet]) -> None:
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise InputError(f"critic frames must be [B,T,3,H,W] in [0,1], got shape {tuple(frames.shape)}")
        if frames.shape[0] != len(question_sets):
            raise InputError(f"{frames.shape[0]} videos but {len(question_sets)} question sets; give one set per video")

    def yes_no_ids(self) -> tuple[list[int], list[int]]:
        if self._yes_no is None:
            self._yes_no = answer_token_ids(self.tokenizer)
        return self._yes_no

    def _score_question(self, q: Question, logprobs: list[torch.Tensor], rows: list[_Row]):
        """-> (reward, p_expected, p_yes, p_no, token logprobs or None, token weights or None)."""
        nan = torch.tensor(float("nan"))
        if q.kind == "binary":
            yes, no = self.yes_no_ids()
            reward, p, p_yes, p_no = binary_reward(
                logprobs[0][0], yes, no, q.expected == "yes", self.config.binary_reward
            )
            return reward, p, p_yes, p_no, None, None
        token_lps = [
            lp.gather(1, torch.tensor(r.targets, device=lp.device)[:, None])[:, 0] for lp, r in zip(logprobs, rows)
        ]
        if q.kind == "choice":
            reward, p = choice_reward(torch.stack([t.sum() for t in token_lps]), q.options.index(q.expected))
            return reward, p, nan, nan, None, None
        weights = torch.tensor(rows[0].weights, device=token_lps[0].device)
        reward, p = dense_reward(token_lps[0], weights)
        return reward, p, nan, nan, token_lps[0], weights

    def score(self, frames: torch.Tensor, question_sets: Sequence[QuestionSet]) -> CriticOutput:
        self._check_frames(frames, question_sets)
        frames = frames.to(self.device)
        batch, q_max = len(question_sets), max((len(s) for s in question_sets), default=0)
        visions = [self.prepare_vision(frames[b]) for b in range(batch)]
        features = self.batched_features(visions) if self.config.shared_prefix else [None] * batch
        results: list[list[tuple]] = []
        for b, (qset, vision) in enumerate(zip(question_sets, visions)):
            rows: list[_Row] = []
            spans: list[tuple[int, int]] = []
            for q in qset:
                q_rows = self.rows_for(q, self.prompt_ids(q, vision, frames.shape[1]))
                spans.append((len(rows), len(rows) + len(q_rows)))
                rows.extend(q_rows)
            logprobs = self._chunked_logprobs(rows, vision, features[b])
            results.append([self._score_question(q, logprobs[s:e], rows[s:e]) for q, (s, e) in zip(qset, spans)])
        return self._collect(results, question_sets, batch, q_max)

    def reply_logprobs(
        self,
        frames: torch.Tensor,
        questions: Sequence[Sequence[Question]],
        replies: Sequence[Sequence[str]],
        modes: Sequence[Sequence[str]],
    ) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Teacher-forced log-probs of replies as ``explain`` generates them: per video and question, (log-probs [n,V]
        at each position of the reply text followed by the end of the turn, that reply's token ids [n]), after the
        question's prompt in its mode ("score": the bare answer; "explain": the answer and why); a question may come
        twice, once per mode. With gradient: what a critic is taught to say, and (argmax at every position) whether
        greedy decoding says exactly that."""
        self._check_frames(frames, questions)
        frames = frames.to(self.device)
        visions = [self.prepare_vision(frames[b]) for b in range(len(questions))]
        features = self.batched_features(visions) if self.config.shared_prefix else [None] * len(visions)
        out = []
        for qset, texts, kinds, vision, feats in zip(questions, replies, modes, visions, features):
            rows = []
            for q, text, mode in zip(qset, texts, kinds, strict=True):
                prompt = self.prompt_ids(q, vision, frames.shape[1], mode)
                rows.append(_Row(prompt + self._continuation(text)[0] + [self.tokenizer.eos_token_id], len(prompt)))
            logprobs = self._chunked_logprobs(rows, vision, feats)
            out.append([(lp, torch.tensor(r.targets, device=lp.device)) for lp, r in zip(logprobs, rows)])
        return out

    def batched_features(self, visions: list[VisionInputs]) -> list[torch.Tensor]:
        """One vision-tower call for all videos -> features [N_b, D] per video."""
        if not visions:
            return []
        merged = VisionInputs(
            {key: torch.cat([v.model_inputs[key] for v in visions]) for key in visions[0].model_inputs},
            [n for v in visions for n in v.counts],
        )
        return list(self.vision_features(merged).split([sum(v.counts) for v in visions]))

    def _collect(self, results, question_sets, batch: int, q_max: int) -> CriticOutput:
        dtype = next((res[0][0].dtype for res in results if res), torch.float32)
        zero = torch.zeros((), device=self.device, dtype=dtype)
        rewards, p_exp, p_yes, p_no, weights, mask = [], [], [], [], [], []
        for qset, res in zip(question_sets, results):
            pad = q_max - len(res)
            rewards.append(torch.stack([r[0] for r in res] + [zero] * pad) if q_max else zero.new_zeros(0))
            p_exp.append([float(r[1]) for r in res] + [0.0] * pad)
            p_yes.append([float(r[2]) for r in res] + [float("nan")] * pad)
            p_no.append([float(r[3]) for r in res] + [float("nan")] * pad)
            weights.append([q.weight for q in qset] + [0.0] * pad)
            mask.append([True] * len(res) + [False] * pad)
        return CriticOutput(
            rewards=torch.stack(rewards) if batch else torch.zeros(0, 0),
            p_expected=torch.tensor(p_exp).reshape(batch, q_max),
            p_yes=torch.tensor(p_yes).reshape(batch, q_max),
            p_no=torch.tensor(p_no).reshape(batch, q_max),
            weights=torch.tensor(weights).reshape(batch, q_max),
            mask=torch.tensor(mask, dtype=torch.bool).reshape(batch, q_max),
            question_ids=[qset.ids for qset in question_sets],
            token_logprobs=[[r[4] for r in res] for res in results],
            token_weights=[[r[5] for r in res] for res in results],
        )

    @torch.no_grad()
    def explain(self, frames: torch.Tensor, question_sets: Sequence[QuestionSet]) -> list[list[str]]:
        self._check_frames(frames, question_sets)
        frames = frames.to(self.device)
        cfg = self.config
        sampling = dict(do_sample=True, temperature=cfg.explain_temperature, top_p=cfg.explain_top_p)
        texts: list[list[str]] = []
        for b, qset in enumerate(question_sets):
            vision = self.prepare_vision(frames[b])
            answers = []
            for q in qset:
                ids = torch.tensor([self.prompt_ids(q, vision, frames.shape[1], mode="explain")], device=self.device)
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    **vision.model_inputs,
                    **self.official_kwargs(ids),
                    max_new_tokens=cfg.max_explain_tokens,
                    pad_token_id=self.pad_id,
                    **(sampling if cfg.explain_do_sample else {"do_sample": False}),
                )
                answers.append(clean_text(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)))
            texts.append(answers)
        return texts
