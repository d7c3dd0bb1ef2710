"""Words are tokens: in the toy T2V's and the toy critic's tokenizers every word and punctuation mark of the world's
prompts, and of the questions the rule decomposer asks about them, is one token, and a caption fits in 32 tokens."""

import random
import re

import pytest

from critics.tiny import TINY_FAMILIES
from critics.tiny import build_tokenizer as build_chat_tokenizer
from drf.models.tiny import build_tokenizer
from drf.toyworld.grammar import prompt_for
from drf.toyworld.scene import sample_scenes
from drf.toyworld.train.critic_data import without_objects
from drf.toyworld.train.critic_words import replies
from prompts.registry import decompose

pytestmark = pytest.mark.usefixtures("one_thread")

# Every phrasing the grammar has: 400 scenes cover each colour, shape, size, count, relation, motion, verb and camera.
PROMPTS = sorted({prompt_for(scene) for scene in sample_scenes(400, seed=77)})
QUESTIONS = sorted({q.text for prompt in PROMPTS[::8] for q in decompose(prompt)})
_PIECE = re.compile(r"[A-Za-z]+|[^\sA-Za-z]")


def test_the_sample_covers_the_whole_grammar():
    words = {w for p in PROMPTS for w in p.replace(",", " ").split()}
    for expected in ("one", "two", "small", "large", "red", "yellow", "green", "blue", "cube", "cubes", "sphere",
                     "spheres", "left", "right", "slides", "rolls", "moves", "static", "pans"):
        assert expected in words


def test_t2v_tokenizer_reads_each_word_of_the_world_as_one_token():
    tokenizer = build_tokenizer()
    for prompt in PROMPTS:
        pieces = tokenizer.convert_ids_to_tokens(tokenizer(prompt)["input_ids"])
        assert pieces[-1] == "</s>"
        assert [p.lstrip("\u2581") for p in pieces[:-1]] == _PIECE.findall(prompt), prompt
        assert len(pieces) <= 32, prompt


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_critic_tokenizer_reads_each_word_of_prompts_and_questions_as_one_token(family):
    tokenizer = build_chat_tokenizer(family)
    for text in PROMPTS + QUESTIONS:
        pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert [p.lstrip("\u0120") for p in pieces] == _PIECE.findall(text), text


def test_critic_tokenizer_reads_each_word_of_the_words_phase_replies_as_one_token():
    """Dense answers and explanations (``critic_words.replies``) of every kind of render, emptied scenes included,
    use only the world's words: the toy critic says each as one token."""
    tokenizer = build_chat_tokenizer("qwen2_vl")
    rng = random.Random(0)
    scenes = sample_scenes(400, seed=77)
    texts = set()
    for i, scene in enumerate(scenes[::4]):
        shown = without_objects(scene) if i % 10 == 0 else scene
        for kind in ("clean", "reverse", "shuffle", "blur"):
            texts |= {r.text for r in replies(shown, scene, kind, rng, per_video=99)}
    assert len(texts) > 300
    for text in sorted(texts):
        pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert [p.lstrip("\u0120") for p in pieces] == _PIECE.findall(text), text


def test_words_outside_the_vocabulary_still_encode():
    tokenizer = build_tokenizer()
    ids = tokenizer("a zebra on ice")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a zebra on ice"
