"""drf.config: YAML + --set overrides build typed dataclass trees, and every mistake is one located line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drf.config import assert_all_fields_documented, config_to_dict, describe, dump_config, load_config, save_config
from drf.errors import ConfigError, invalid
from drf.frames import FramesConfig
from drf.grad_window import GradWindowConfig
from drf.logging import LoggingConfig
from drf.models.registry import ModelConfig
from drf.runtime import RuntimeConfig
from drf.sample import SampleRunConfig
from drf.sampling import SamplingConfig

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.tiny=wan-tiny"]


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path, schema=SampleRunConfig, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, schema, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# A schema exercising every supported field type, independent of the core sections.
@dataclass
class Inner:
    scale: float = field(default=1.0, metadata={"help": "a float"})
    tags: tuple[str, ...] = field(default=(), metadata={"help": "a tuple"})

    def validate(self) -> None:
        if self.scale < 0:
            raise ConfigError(f"scale must be >= 0 (got {self.scale})")  # plain ConfigError naming the key


@dataclass
class Checked:
    level: int = field(default=0, metadata={"help": "checked in __post_init__"})

    def __post_init__(self) -> None:
        if self.level > 3:
            raise invalid("level", f"must be <= 3 (got {self.level})")


@dataclass
class Everything:
    count: int = field(default=1, metadata={"help": "an int"})
    rate: float = field(default=0.5, metadata={"help": "a float"})
    flag: bool = field(default=False, metadata={"help": "a bool"})
    text: str = field(default="hi", metadata={"help": "a str"})
    maybe: int | None = field(default=None, metadata={"help": "an optional int"})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "a choice"})
    maybe_mode: Literal["a", "b"] | None = field(default=None, metadata={"help": "an optional choice"})
    ids: list[int] = field(default_factory=list, metadata={"help": "a list"})
    pair: tuple[int, str] = field(default=(0, "a"), metadata={"help": "a fixed tuple"})
    weights: dict[str, float] = field(default_factory=dict, metadata={"help": "a mapping"})
    where: Path = field(default=Path("out"), metadata={"help": "a path"})
    inner: Inner = field(default_factory=Inner, metadata={"help": "a section"})
    extra: Inner | None = field(default=None, metadata={"help": "an optional section"})
    items: list[Inner] = field(default_factory=list, metadata={"help": "a list of sections"})
    checked: Checked = field(default_factory=Checked, metadata={"help": "a section checked on construction"})


@dataclass
class NeedsName:
    name: str = field(metadata={"help": "required"})


# ------------------------------------------------------------------------------------------------------------------
# Loading


def test_defaults_load_without_a_file():
    assert load_config(None, Everything) == Everything()
    assert load_config("", Everything) == Everything()
    assert load_config(None, SampleRunConfig, TINY) == SampleRunConfig(model=ModelConfig(tiny="wan-tiny"))


def test_empty_file_and_empty_section_mean_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing yet\n"), Everything) == Everything()
    assert load_config(write(tmp_path, "inner:\n"), Everything) == Everything()


def test_yaml_values_become_typed_fields(tmp_path):
    path = write(
        tmp_path,
        "count: 3\nrate: 2\nflag: true\ntext: hello\nmaybe: 4\nmode: slow\nids: [1, 2]\npair: [5, b]\n"
        "weights: {alignment: 2, physics: 0.5}\nwhere: runs/a\ninner: {scale: 1e-4, tags: [x, y]}\n"
        "extra: {scale: 3}\nitems: [{scale: 2}, {}]\n",
    )
    cfg = load_config(path, Everything)
    assert cfg == Everything(
        count=3,
        rate=2.0,
        flag=True,
        text="hello",
        maybe=4,
        mode="slow",
        ids=[1, 2],
        pair=(5, "b"),
        weights={"alignment": 2.0, "physics": 0.5},
        where=Path("runs/a"),
        inner=Inner(scale=1e-4, tags=("x", "y")),
        extra=Inner(scale=3.0),
        items=[Inner(scale=2.0), Inner()],
    )
    assert type(cfg.rate) is float and type(cfg.inner.scale) is float  # ints and "1e-4" become floats


def test_tiny_sample_config_is_the_documented_tiny_run():
    cfg = load_config(REPO / "configs" / "tiny_sample.yaml", SampleRunConfig)
    assert (cfg.model.tiny, cfg.model.path) == ("wan-tiny", None)
    assert (cfg.model.height, cfg.model.width, cfg.model.num_frames) == (32, 32, 9)
    assert (cfg.sampling.num_steps, cfg.sampling.guidance_scale) == (8, 4.0)
    assert len(cfg.prompts) == 2


# ------------------------------------------------------------------------------------------------------------------
# Overrides


def test_overrides_convert_to_field_types(tmp_path):
    cfg = load_config(
        write(tmp_path, "count: 3\ninner:\n  scale: 2.0\n"),
        Everything,
        [
            "count=7",
            "rate=1e-4",
            "flag=true",
            "ids=[1, 2, 3]",
            "maybe=null",
            "inner.scale=4",
            "inner.tags=[a]",
            "weights.quality=3",
            "text=2024",
            "where=/tmp/x",
            "extra.scale=0.5",
        ],
    )
    assert (cfg.count, cfg.rate, cfg.flag, cfg.ids, cfg.maybe) == (7, 1e-4, True, [1, 2, 3], None)
    assert cfg.inner == Inner(scale=4.0, tags=("a",))
    assert cfg.weights == {"quality": 3.0}
    assert cfg.text == "2024"  # a str field keeps the text typed, not YAML's int
    assert cfg.where == Path("/tmp/x")
    assert cfg.extra == Inner(scale=0.5)  # an override can create an optional section


def test_later_overrides_win_and_null_clears_optional_fields():
    cfg = load_config(None, SampleRunConfig, [*TINY, "sampling.num_steps=3", "sampling.num_steps=5"])
    assert cfg.sampling.num_steps == 5
    cfg = load_config(None, SampleRunConfig, ["model.path=/models/wan", "model.attention_backend=xformers"])
    assert (cfg.model.path, cfg.model.tiny, cfg.model.attention_backend) == ("/models/wan", None, "xformers")
    cfg = load_config(None, SampleRunConfig, [*TINY, "model.attention_backend=null"])
    assert cfg.model.attention_backend is None


@dataclass
class ShortRun:
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(num_steps=8, grad_window=GradWindowConfig(k=3)),
        metadata={"help": "a section whose defaults differ from SamplingConfig's"},
    )


def test_setting_one_key_keeps_the_parents_section_defaults(tmp_path):
    cfg = load_config(None, ShortRun, ["sampling.guidance_scale=2"])
    assert (cfg.sampling.num_steps, cfg.sampling.grad_window.k, cfg.sampling.guidance_scale) == (8, 3, 2.0)
    cfg = load_config(write(tmp_path, "sampling:\n  grad_window: {seed: 4}\n"), ShortRun)
    assert cfg.sampling == SamplingConfig(num_steps=8, grad_window=GradWindowConfig(k=3, seed=4))
    assert load_config(None, ShortRun) == ShortRun()


def test_override_replacing_a_section_with_a_mapping():
    cfg = load_config(None, Everything, ["inner={scale: 2, tags: [q]}"])
    assert cfg.inner == Inner(scale=2.0, tags=("q",))


# ------------------------------------------------------------------------------------------------------------------
# Unknown keys


SAMPLE_YAML = """\
name: demo
prompts: [a cat]
model:
  tiny: wan-tiny
  num_frames: 9
sampling:
  num_steps: 8
  grad_window:
    k: 2
"""


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("name: demo", "nmae: demo", 1, "unknown key 'nmae'; did you mean 'name'?"),
        ("  num_frames: 9", "  num_frame: 9", 5, "unknown key 'model.num_frame'; did you mean 'model.num_frames'?"),
        ("  num_steps: 8", "  num_step: 8", 7, "unknown key 'sampling.num_step'; did you mean 'sampling.num_steps'?"),
        ("    k: 2", "    kk: 2", 9, "unknown key 'sampling.grad_window.kk'; did you mean 'sampling.grad_window.k'?"),
        ("name: demo", "num_steps: 8", 1, "unknown key 'num_steps'; did you mean 'sampling.num_steps'?"),
        (
            "name: demo",
            "zzz: 1",
            1,
            "unknown key 'zzz'; valid keys at the top level: name, seed, prompts, model, sampling, logging, runtime",
        ),
    ],
)
def test_unknown_key_in_file_names_line_and_nearest_key(tmp_path, old, new, line, message):
    path = write(tmp_path, SAMPLE_YAML.replace(old, new))
    assert error_of(path) == f"{path}:{line}: {message}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sampling.num_step=3", "unknown key 'sampling.num_step'; did you mean 'sampling.num_steps'?"),
        ("modle.tiny=x", "unknown key 'modle'; did you mean 'model'?"),
        ("sampling.grad_window.kk=3", "unknown key 'sampling.grad_window.kk'; did you mean 'sampling.grad_window.k'?"),
        (
            "logging.zzz=1",
            "unknown key 'logging.zzz'; valid keys under 'logging': "
            + ", ".join(f.name for f in dataclasses.fields(LoggingConfig)),
        ),
    ],
)
def test_unknown_key_in_override_names_the_override(tmp_path, override, message):
    assert error_of(write(tmp_path, SAMPLE_YAML), overrides=[override]) == f"--set {override}: {message}"


def test_malformed_overrides():
    assert error_of(None, overrides=["foo"]).startswith("--set foo: expected KEY=VALUE")
    assert error_of(None, overrides=["=3"]).startswith("--set =3: expected KEY=VALUE")
    assert error_of(None, overrides=["logging.fps.x=1"]) == (
        "--set logging.fps.x=1: 'logging.fps' is a value, not a section; set it directly"
    )
    assert error_of(None, Everything, ["ids=[1,"]).startswith("--set ids=[1,: invalid YAML value (")


# ------------------------------------------------------------------------------------------------------------------
# Wrong types and values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count: abc", "'count' expects int, got 'abc'"),
        ("count: 2.5", "'count' expects int, got 2.5"),
        ("count: true", "'count' expects int, got true"),
        ("rate: fast", "'rate' expects float, got 'fast'"),
        ("flag: 1", "'flag' expects bool, got 1"),
        ("flag: 'true'", "'flag' expects bool, got 'true'"),
        ("text: 12", "'text' expects str, got 12; quote it"),
        ("maybe: x", "'maybe' expects int or null, got 'x'"),
        ("ids: 3", "'ids' expects list[int], got 3; write a list like [a, b]"),
        ("pair: [1]", "'pair' expects [int, str], got [1]; it needs exactly 2 items"),
        ("weights: [1]", "'weights' expects mapping of float, got [1]"),
        ("inner: 3", "'inner' must be a mapping of keys (e.g. 'key: value'), got 3"),
    ],
)
def test_wrong_type_names_key_and_expected_type(tmp_path, text, message):
    path = write(tmp_path, "# header\n" + text + "\n")
    assert error_of(path, Everything) == f"{path}:2: {message}"


def test_wrong_type_inside_lists_and_sections_points_at_the_item(tmp_path):
    path = write(tmp_path, "ids:\n  - 1\n  - two\nitems:\n  - scale: 1\n  - scale: x\n")
    assert error_of(path, Everything) == f"{path}:3: 'ids[1]' expects int, got 'two'"
    path = write(tmp_path, "items:\n  - scale: 1\n  - scale: x\n")
    assert error_of(path, Everything) == f"{path}:3: 'items[1].scale' expects float, got 'x'"


def test_wrong_type_in_override(tmp_path):
    assert error_of(write(tmp_path, SAMPLE_YAML), overrides=["sampling.num_steps=abc"]) == (
        "--set sampling.num_steps=abc: 'sampling.num_steps' expects int, got 'abc'"
    )


def test_bad_choice_lists_allowed_values_and_suggests(tmp_path):
    path = write(tmp_path, SAMPLE_YAML + "logging:\n  video_format: mp5\n")
    assert (
        error_of(path)
        == f"{path}:11: 'logging.video_format' expects one of 'gif', 'mp4', got 'mp5'; did you mean 'mp4'?"
    )
    assert error_of(None, overrides=[*TINY, "model.dtype=fp16"]) == (
        "--set model.dtype=fp16: 'model.dtype' expects one of 'float32', 'bfloat16', 'float16', got 'fp16'; "
        "did you mean 'float16'?"
    )
    assert (
        error_of(None, Everything, ["maybe_mode=c"])
        == "--set maybe_mode=c: 'maybe_mode' expects one of 'a', 'b', got 'c'"
    )


def test_missing_required_key(tmp_path):
    assert error_of(write(tmp_path, "{}\n"), NeedsName) == f"{tmp_path / 'x.yaml'}: missing required key 'name'"
    assert load_config(None, NeedsName, ["name=a"]) == NeedsName("a")


# ------------------------------------------------------------------------------------------------------------------
# Section validation


def test_num_frames_must_be_4n_plus_1_with_key_path_and_line(tmp_path):
    path = write(tmp_path, SAMPLE_YAML.replace("num_frames: 9", "num_frames: 8"))
    assert error_of(path) == f"{path}:5: model.num_frames must be 4n+1 (got 8); try 9"
    assert error_of(path, overrides=["model.num_frames=7"]) == (
        "--set model.num_frames=7: model.num_frames must be 4n+1 (got 7); try 5 or 9"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.height=40"], "model.height must be a multiple of 16 (got 40); try 32 or 48"),
        (["model.shift=0"], "model.shift must be > 0 (got 0.0)"),
        (["sampling.num_steps=0"], "sampling.num_steps must be >= 1 (got 0)"),
        (["sampling.guidance_scale=-1"], "sampling.guidance_scale must be >= 0 (got -1.0)"),
        (["sampling.grad_window.k=0"], "sampling.grad_window.k must be >= 1 (got 0)"),
        (["sampling.frames.n=0"], "sampling.frames.n must be >= 1 (got 0)"),
        (["logging.fps=0"], "logging.fps must be >= 1 (got 0)"),
        (["prompts=[]"], "prompts must list at least one prompt"),
        (["name=a/b"], "name must be a plain directory name (got 'a/b')"),
    ],
)
def test_section_checks_name_the_key_set(overrides, message):
    assert error_of(None, overrides=[*TINY, *overrides]) == f"--set {overrides[0]}: {message}"


def test_cross_field_checks_point_at_the_offending_key(tmp_path):
    path = write(tmp_path, SAMPLE_YAML)  # grad_window.k: 2 on line 9
    assert error_of(path, overrides=["sampling.num_steps=1"]) == (
        f"{path}:9: sampling.grad_window.k must be <= num_steps (got 2; num_steps is 1)"
    )
    message = error_of(path, overrides=["sampling.grad_window.kind=steps", "sampling.grad_window.steps=[3, 8]"])
    assert (
        message
        == "--set sampling.grad_window.steps=[3, 8]: sampling.grad_window.steps index 8 is outside 0..7 (num_steps)"
    )
    message = error_of(path, overrides=["sampling.grad_window.kind=steps"])
    assert message.startswith(f"{path}:8: sampling.grad_window.steps must list at least one step index")


def test_model_needs_exactly_one_source(tmp_path):
    assert error_of(None).startswith("model.tiny or path must be set")
    path = write(tmp_path, SAMPLE_YAML)
    assert error_of(path, overrides=["model.path=/m"]).startswith(
        "--set model.path=/m: model.path is set together with tiny"
    )


@dataclass
class SpellsItsPath:
    mode: str = field(default="a", metadata={"help": "checked by a message that spells the section path"})

    def validate(self) -> None:
        if self.mode != "a":
            raise ConfigError(f"critic.mode is {self.mode!r}; expected a")


@dataclass
class HoldsCritic:
    critic: SpellsItsPath = field(default_factory=SpellsItsPath, metadata={"help": "at its usual place"})
    judge: SpellsItsPath = field(default_factory=SpellsItsPath, metadata={"help": "at another place"})


def test_messages_spelling_the_section_path_are_not_prefixed_twice(tmp_path):
    path = write(tmp_path, "critic:\n  mode: b\n")
    assert error_of(path, HoldsCritic) == f"{path}:2: critic.mode is 'b'; expected a"
    assert error_of(None, HoldsCritic, ["judge.mode=b"]) == "--set judge.mode=b: judge.mode is 'b'; expected a"


def test_plain_config_error_and_post_init_checks_are_located(tmp_path):
    path = write(tmp_path, "inner:\n  scale: -2\n")
    assert error_of(path, Everything) == f"{path}:2: inner.scale must be >= 0 (got -2.0)"
    path = write(tmp_path, "checked:\n  level: 9\n")
    assert error_of(path, Everything) == f"{path}:2: checked.level must be <= 3 (got 9)"


# ------------------------------------------------------------------------------------------------------------------
# Unreadable files


def test_missing_file():
    assert error_of("no/such.yaml") == "config file not found: no/such.yaml"


def test_directory_is_not_a_config(tmp_path):
    assert error_of(tmp_path).startswith(f"cannot read config file {tmp_path} (")


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "model:\n  tiny: wan-tiny\n  height: [32\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3: invalid YAML (")  # where the unclosed bracket opened
    assert message.endswith("close the quote or bracket opened there")
    path = write(tmp_path, "model:\n  tiny: a: b\n")
    assert error_of(path) == (
        f"{path}:2: invalid YAML (mapping values are not allowed here); quote a value that contains ': ', or fix the indentation"
    )
    path = write(tmp_path, "model:\n\ttiny: a\n")
    assert error_of(path).endswith("indent with spaces, not tabs")


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    assert error_of(path) == f"{path}: the top level must be a mapping of sections (e.g. 'model:'), got a list"


def test_duplicate_keys_are_rejected(tmp_path):
    path = write(tmp_path, "count: 1\ncount: 2\n")
    assert error_of(path, Everything) == f"{path}:2: duplicate key 'count'"


# ------------------------------------------------------------------------------------------------------------------
# Writing


def test_dump_keeps_dataclass_key_order():
    cfg = load_config(REPO / "configs" / "tiny_sample.yaml", SampleRunConfig)
    data = config_to_dict(cfg)
    assert list(data) == [f.name for f in dataclasses.fields(SampleRunConfig)]
    assert list(data["sampling"]) == [f.name for f in dataclasses.fields(SamplingConfig)]
    assert dump_config(cfg).splitlines()[0] == "name: tiny_sample"


def test_save_then_load_round_trips_exactly(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny_sample.yaml", SampleRunConfig, ["model.negative_prompt=null"])
    assert cfg.model.negative_prompt == "null"  # a str field keeps the typed text
    path = save_config(cfg, tmp_path / "runs" / "demo")
    assert path == tmp_path / "runs" / "demo" / "config.yaml"
    assert load_config(path, SampleRunConfig) == cfg
    everything = Everything(
        rate=1e-20,
        text="123",
        ids=[3],
        pair=(1, "yes"),
        weights={"a": 0.1},
        where=Path("a b/c"),
        inner=Inner(tags=("null", "1e-4", "multi\nline")),
        extra=Inner(),
        items=[Inner(scale=2.0)],
    )
    assert load_config(save_config(everything, tmp_path), Everything) == everything
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "runs"]  # no temp file left behind


@dataclass
class Scalars:
    text: str = field(default="", metadata={"help": "any text"})
    rate: float = field(default=0.0, metadata={"help": "any finite float"})
    count: int = field(default=0, metadata={"help": "any int"})
    texts: list[str] = field(default_factory=list, metadata={"help": "texts"})
    table: dict[str, float] = field(default_factory=dict, metadata={"help": "keyed floats"})


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=150, deadline=None)
@given(
    text=_TEXT,
    rate=st.floats(allow_nan=False),
    count=st.integers(),
    texts=st.lists(_TEXT, max_size=3),
    table=st.dictionaries(_TEXT, st.floats(allow_nan=False, allow_infinity=False), max_size=3),
)
def test_dump_round_trips_any_values(tmp_path_factory, text, rate, count, texts, table):
    cfg = Scalars(text, rate, count, texts, table)
    path = save_config(cfg, tmp_path_factory.mktemp("run"))
    loaded = load_config(path, Scalars)
    assert loaded == cfg
    assert math.copysign(1, loaded.rate) == math.copysign(1, rate)  # -0.0 keeps its sign


# ------------------------------------------------------------------------------------------------------------------
# Reference


def test_describe_covers_every_leaf_field_with_help_and_defaults():
    rows = {key: (type_str, default, help_) for key, type_str, default, help_ in describe(SampleRunConfig)}
    expected = {"name", "seed", "prompts"}
    for prefix, section in [
        ("model", ModelConfig),
        ("sampling", SamplingConfig),
        ("sampling.grad_window", GradWindowConfig),
        ("sampling.frames", FramesConfig),
        ("logging", LoggingConfig),
        ("runtime", RuntimeConfig),
    ]:
        expected |= {
            f"{prefix}.{f.name}" for f in dataclasses.fields(section) if f.name not in ("grad_window", "frames")
        }
    assert set(rows) == expected
    assert all(help_ for _, _, help_ in rows.values())
    assert rows["model.num_frames"] == ("int", 9, ModelConfig.__dataclass_fields__["num_frames"].metadata["help"])
    assert rows["model.dtype"][0] == "{float32, bfloat16, float16}"
    assert rows["model.path"][:2] == ("str or null", None)
    assert rows["sampling.grad_window.steps"][:2] == ("list[int]", [])


def test_describe_uses_defaults_of_the_parents_section_instance():
    @dataclass
    class Run:
        sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(num_steps=8), metadata={"help": "s"})

    rows = {key: default for key, _, default, _ in describe(Run)}
    assert rows["sampling.num_steps"] == 8


def test_every_core_field_is_documented():
    assert_all_fields_documented(SampleRunConfig)
    assert_all_fields_documented(Everything)


@dataclass
class Undocumented:
    a: int = 0


@dataclass
class PartlyDocumented:
    sub: Undocumented = field(default_factory=Undocumented)
    b: int = field(default=0, metadata={"help": "documented"})


def test_undocumented_fields_are_reported():
    with pytest.raises(AssertionError, match="config fields without help: sub, sub.a"):
        assert_all_fields_documented(PartlyDocumented)


def test_paths_resolve_against_the_config_file_or_the_working_directory(tmp_path, monkeypatch):
    from trainers.drf import DRFRunConfig

    (tmp_path / "cfg" / "models" / "wan").mkdir(parents=True)
    path = write(tmp_path / "cfg", "prompts: p.txt\nmodel:\n  path: models/wan\ncritic:\n  path: Qwen/Qwen2-VL-2B\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path, DRFRunConfig, ["logging.output_dir=out"])
    assert cfg.prompts == str(tmp_path / "cfg" / "p.txt")  # the file's folder, wherever drf runs from
    assert cfg.model.path == str(tmp_path / "cfg" / "models" / "wan")
    assert cfg.critic.path == "Qwen/Qwen2-VL-2B"  # no such folder: a hub id stays as written
    assert cfg.logging.output_dir == str(tmp_path / "out")  # --set: the working directory
    assert f"prompts: {tmp_path / 'cfg' / 'p.txt'}" in dump_config(cfg)


def test_shipped_configs_load_from_any_working_directory(tmp_path, monkeypatch):
    from drf.commands import resolve_schema

    monkeypatch.chdir(tmp_path)
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path, resolve_schema(str(path)))
        for name in ("prompts", "eval_prompts"):
            value = getattr(cfg, name, "")
            if isinstance(value, str):  # drf sample's prompts are the prompts themselves
                assert not value or Path(value).is_file(), (path.name, name, value)
