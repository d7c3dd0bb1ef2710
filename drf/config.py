"""Run configs: dataclass sections, YAML files that mirror them, ``--set a.b=value`` overrides.

Every knob lives in a dataclass field with a help string, so the YAML a person writes, the ``--set`` they type and the
README reference are all checked against one schema. The loader works on any tree of dataclasses (packages define their
own sections), converts values to the annotated field types, and turns every mistake into one line that names the
file:line (or the ``--set`` argument), the dotted key and what to write instead. A section may define
``validate(self)`` raising ``invalid(key, detail)``; the loader prefixes the full key path and where it was set.

A field whose metadata has ``"path"`` holds a file or folder: a relative value written in a config file is resolved
against that file's folder, one given with ``--set`` against the working directory, so a config works from anywhere
and the run's saved config.yaml holds absolute paths ("model" paths resolve only when they exist there, since
``owner/name`` may be a hub id); defaults stay relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from drf.errors import ConfigError, FieldError
from drf.run_dir import RunDir

T = TypeVar("T")
KeyPath = tuple[str | int, ...]

# --------------------------------------------------------------------------------------------------------------------
# Types: names for messages and conversion of parsed YAML values


_NONE = type(None)
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _strip_none(tp: Any) -> Any:
    """``X`` for ``X | None``; any other type unchanged."""
    args = [a for a in typing.get_args(tp) if a is not _NONE] if _is_union(tp) else [tp]
    return args[0] if len(args) == 1 else tp


def _section_type(tp: Any) -> type | None:
    """The dataclass behind ``tp`` (``X`` or ``X | None``), or None when ``tp`` is not a section."""
    tp = _strip_none(tp)
    return tp if dataclasses.is_dataclass(tp) and isinstance(tp, type) else None


def type_name(tp: Any) -> str:
    """How a field type reads in messages and the config reference: ``int``, ``str or null``, ``{gif, mp4}``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        return " or ".join("null" if a is _NONE else type_name(a) for a in args)
    if origin is Literal:
        return "{" + ", ".join(str(a) for a in args) + "}"
    if origin is list:
        return f"list[{type_name(args[0])}]"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{type_name(args[0])}]"
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"mapping of {type_name(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "section"
    if tp is Path:
        return "path"
    return getattr(tp, "__name__", str(tp))


class _Raw:
    """A ``--set`` scalar: its YAML value plus the text typed, so ``--set name=2024`` gives a str field ``"2024"``."""

    __slots__ = ("text", "value")

    def __init__(self, text: str, value: Any) -> None:
        self.text, self.value = text, value


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, _Raw) else value


def _unraw(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unraw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unraw(v) for v in value]
    return _plain(value)


def _show(value: Any) -> str:
    value = _unraw(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Loader:
    """One load: where each key came from (file:line or ``--set ...``), and conversion with located errors."""

    def __init__(self, source: str | None, root: type) -> None:
        self.source, self.root = source, root
        self.origins: dict[KeyPath, str] = {}

    # -- where ---------------------------------------------------------------------------------------------------

    def where(self, path: KeyPath) -> str:
        """``file:line: `` of ``path`` or its nearest recorded ancestor; ``file: `` or nothing when unknown."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]] + ": "
        return f"{self.source}: " if self.source else ""

    def fail(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.where(path) + message)

    # -- conversion ----------------------------------------------------------------------------------------------

    def convert(self, value: Any, tp: Any, path: KeyPath, base: Any = None) -> Any:
        """``value`` as type ``tp``; a section starts from ``base``, the parent's default instance of it."""
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any:
            return _plain(value)
        if _is_union(tp):
            if _plain(value) is None and _NONE in args:
                return None
            options = [a for a in args if a is not _NONE]
            if len(options) == 1 and options[0] in (str, Path, bool, int, float):
                return self._scalar(value, options[0], path, shown=tp)  # message says "int or null"
            errors = []
            for arg in options:
                try:
                    return self.convert(value, arg, path, base)
                except ConfigError as err:
                    errors.append(err)
            if len(errors) == 1:  # X | None: the X message is the precise one
                raise errors[0]
            raise self._wrong_type(value, tp, path)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, _plain(value), path, base if isinstance(base, tp) else None)
        if origin is Literal:
            return self._choice(_plain(value), args, path)
        if origin in (list, tuple):
            return self._sequence(_plain(value), tp, path)
        if origin is dict:
            return self._mapping(_plain(value), args, path)
        return self._scalar(value, tp, path)

    def _scalar(self, value: Any, tp: Any, path: KeyPath, shown: Any = None) -> Any:
        plain, shown = _plain(value), shown or tp
        if tp is str or tp is Path:
            if isinstance(value, _Raw):  # a str field takes the text typed: `--set negative_prompt=` is ''
                return tp(value.text)
            if isinstance(plain, str):
                return tp(plain)
            hint = "; quote it" if isinstance(plain, (int, float)) else ""
            raise self._wrong_type(value, shown, path, hint)
        if tp is bool:
            if isinstance(plain, bool):
                return plain
        elif tp is int:
            if isinstance(plain, int) and not isinstance(plain, bool):
                return plain
        elif tp is float:
            if isinstance(plain, (int, float)) and not isinstance(plain, bool):
                return float(plain)
            # PyYAML reads 1e-4 (no dot) as a string; accept what Python reads as a number.
            if isinstance(plain, str) and _NUMBER.fullmatch(plain.strip()):
                return float(plain)
        else:
            raise TypeError(f"config field {_dotted(path)!r} has unsupported type {tp!r}")
        raise self._wrong_type(value, shown, path)

    def _choice(self, value: Any, choices: tuple[Any, ...], path: KeyPath) -> Any:
        for choice in choices:
            if value == choice and type(value) is type(choice):
                return choice
        names = [str(c) for c in choices]
        close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        allowed = ", ".join(repr(c) for c in choices)
        raise self.fail(path, f"{_dotted(path)!r} expects one of {allowed}, got {_show(value)}{hint}")

    def _sequence(self, value: Any, tp: Any, path: KeyPath) -> Any:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise self._wrong_type(value, tp, path, "; write a list like [a, b]")
        if typing.get_origin(tp) is list:
            return [self.convert(v, args[0], path + (i,)) for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(self.convert(v, args[0], path + (i,)) for i, v in enumerate(value))
        if len(value) != len(args):
            raise self._wrong_type(value, tp, path, f"; it needs exactly {len(args)} items")
        return tuple(self.convert(v, a, path + (i,)) for i, (v, a) in enumerate(zip(value, args)))

    def _mapping(self, value: Any, args: tuple[Any, ...], path: KeyPath) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._wrong_type(value, dict[str, args[1]], path)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise self.fail(path + (str(key),), f"{_dotted(path)!r} keys must be strings, got {key!r}; quote it")
            out[key] = self.convert(item, args[1], path + (key,))
        return out

    def _wrong_type(self, value: Any, tp: Any, path: KeyPath, hint: str = "") -> ConfigError:
        return self.fail(path, f"{_dotted(path)!r} expects {type_name(tp)}, got {_show(value)}{hint}")

    # -- sections ------------------------------------------------------------------------------------------------

    def build(self, schema: type[T], data: Any, path: KeyPath, base: Any = None) -> T:
        """A ``schema`` instance from ``data``; keys not given keep ``base``'s values, else the class defaults.

        ``base`` matters when a parent declares ``field(default_factory=lambda: SamplingConfig(num_steps=8))``:
        setting one key of that section must not reset the others to ``SamplingConfig``'s own defaults.
        """
        if data is None:  # `sampling:` with every line commented out means defaults
            data = {}
        if not isinstance(data, dict):
            where = f"{_dotted(path)!r}" if path else "the top level"
            raise self.fail(path, f"{where} must be a mapping of keys (e.g. 'key: value'), got {_show(data)}")
        fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
        moved = getattr(schema, "MOVED_KEYS", {})  # keys an older config had: the message shows the new form
        for key in data:
            if key in moved:
                raise self.fail(path + (str(key),), f"{_dotted(path + (str(key),))!r} {moved[key]}")
            if key not in fields:
                raise self.fail(path + (str(key),), _unknown_key(self.root, schema, path, str(key)))
        hints = _hints(schema)
        kwargs = {}
        for name, value in data.items():
            child_base = None
            if _section_type(hints[name]) is not None:
                child_base = getattr(base, name) if base is not None else _field_default(fields[name])
            kwargs[name] = self.convert(value, hints[name], path + (name,), child_base)
            kind = fields[name].metadata.get("path")
            if kind and isinstance(kwargs[name], str) and kwargs[name]:
                kwargs[name] = self.locate(kwargs[name], path + (name,), kind)
        for name, f in fields.items():
            if name in kwargs:
                continue
            if base is not None:
                kwargs[name] = getattr(base, name)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.fail(path, f"missing required key {_dotted(path + (name,))!r}")
        try:
            return schema(**kwargs)
        except ConfigError as err:  # a __post_init__ check
            raise self.located(err, schema, path) from None

    def locate(self, value: str, path: KeyPath, kind: str) -> str:
        """A relative path as an absolute one: against the config file's folder when the file set it, against the
        working directory when ``--set`` did. ``kind`` "file" always resolves; "model" only when the path exists
        there, since ``owner/name`` may be a hub id."""
        origin = self.origins.get(path, "")
        from_file = bool(self.source) and not origin.startswith("--set")
        base = Path(self.source).resolve().parent if from_file else Path.cwd()
        candidate = Path(value).expanduser()
        if candidate.is_absolute():
            return str(candidate)
        resolved = (base / candidate).resolve()
        if kind == "model" and not resolved.exists():
            return value
        return str(resolved)

    def validate(self, value: Any, path: KeyPath) -> None:
        """Call every section's ``validate`` bottom-up, so a parent may rely on its children being valid."""
        for child_path, child in _children(value, path):
            self.validate(child, child_path)
        check = getattr(value, "validate", None) if dataclasses.is_dataclass(value) else None
        if callable(check):
            try:
                check()
            except ConfigError as err:
                raise self.located(err, type(value), path) from None

    def located(self, err: ConfigError, schema: type, path: KeyPath) -> ConfigError:
        """Prefix a section's own message with where the offending key was set and its full dotted path."""
        if isinstance(err, FieldError):
            key, rest = err.key, err.detail
        else:
            key, rest = _leading_key(str(err), schema)
        if key is None:
            prefix = f"{_dotted(path)}: " if path else ""
            return self.fail(path, prefix + rest)
        full = path + tuple(key.split("."))
        return self.fail(full, f"{_dotted(full)} {rest}")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _children(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield path + (f.name,), getattr(value, f.name)
    elif isinstance(value, (list, tuple)):
        yield from ((path + (i,), v) for i, v in enumerate(value))
    elif isinstance(value, dict):
        yield from ((path + (k,), v) for k, v in value.items())


def _leading_key(message: str, schema: type) -> tuple[str | None, str]:
    """Split a plain ``ConfigError("num_frames must ...")`` into the field key it starts with and the rest.

    A message may spell the key from the section's usual place (``"critic.family is ..."``); the leading parts
    before the first field name are dropped so the loader can put the section's real path in front.
    """
    match = re.match(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", message)
    if match:
        parts = match.group(0).split(".")
        names = {f.name for f in dataclasses.fields(schema)}
        start = next((i for i, part in enumerate(parts) if part in names), None)
        if start is not None:
            return ".".join(parts[start:]), message[match.end() :].lstrip()
    return None, message


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _unknown_key(root: type, schema: type, path: KeyPath, key: str) -> str:
    """Suggest the closest key at the same level, else the same name in another section, else list the level."""
    names = [f.name for f in dataclasses.fields(schema) if f.init]
    full = _dotted(path + (key,))
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f"unknown key {full!r}; did you mean {_dotted(path + (close[0],))!r}?"
    elsewhere = [row[0] for row in describe(root) if row[0].rsplit(".", 1)[-1] == key]
    if elsewhere:
        return f"unknown key {full!r}; did you mean {elsewhere[0]!r}?"
    where = f"under {_dotted(path)!r}" if path else "at the top level"
    return f"unknown key {full!r}; valid keys {where}: {', '.join(names)}"


# --------------------------------------------------------------------------------------------------------------------
# Reading YAML and applying overrides


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's top-level mapping, or a ``ConfigError`` naming file:line of a syntax error."""
    return _read_yaml(Path(path), _Loader(str(path), object))


def _read_yaml(path: Path, loader: _Loader) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(f"cannot read config file {path} ({reason}); pass a readable UTF-8 YAML file") from None
    parser = yaml.SafeLoader(text)
    try:
        node = parser.get_single_node()
        data = parser.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        if err.context_mark is not None and (mark is None or mark.index >= len(text.rstrip())):
            mark = err.context_mark  # an unclosed bracket or quote is reported at the end; point where it opened
        line = f":{mark.line + 1}" if mark else ""
        problem = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise ConfigError(f"{path}{line}: invalid YAML ({problem}); {_yaml_hint(problem)}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(err).split())})") from None
    finally:
        parser.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections (e.g. 'model:'), got a {type(data).__name__}"
        )
    _record_lines(node, (), str(path), loader.origins)
    return data


_YAML_HINTS = (
    ("'\\t'", "indent with spaces, not tabs"),
    ("mapping values are not allowed", "quote a value that contains ': ', or fix the indentation"),
    ("block end", "check the indentation of that line against its siblings"),
    ("end of stream", "close the quote or bracket opened there"),
    ("stream end", "close the quote or bracket opened there"),
    ("expected ','", "close the bracket or separate items with commas"),
)


def _yaml_hint(problem: str) -> str:
    return next((hint for needle, hint in _YAML_HINTS if needle in problem), "fix the syntax on that line")


def _record_lines(node: yaml.Node, path: KeyPath, source: str, origins: dict[KeyPath, str]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key in seen:
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: duplicate key {_dotted(path + (key,))!r}")
            seen.add(key)
            origins[path + (key,)] = f"{source}:{key_node.start_mark.line + 1}"
            _record_lines(value_node, path + (key,), source, origins)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            origins[path + (i,)] = f"{source}:{item.start_mark.line + 1}"
            _record_lines(item, path + (i,), source, origins)


def _apply_override(data: dict[str, Any], override: str, loader: _Loader) -> None:
    origin = f"--set {override}"
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"{origin}: expected KEY=VALUE with a dotted key, e.g. --set sampling.num_steps=8")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ConfigError(f"{origin}: invalid YAML value ({problem}); quote the value") from None
    node, tp = data, loader.root
    for depth, part in enumerate(parts[:-1]):
        here = tuple(parts[: depth + 1])
        tp = _child_type(tp, part)
        if tp is not None and _section_type(tp) is None and typing.get_origin(_strip_none(tp)) is not dict:
            raise ConfigError(f"{origin}: {_dotted(here)!r} is a value, not a section; set it directly")
        if node.get(part) is None:
            node[part] = {}
            loader.origins.setdefault(here, origin)
        elif not isinstance(node[part], dict):
            raise ConfigError(f"{origin}: {_dotted(here)!r} is a value, not a section; set it directly")
        node = node[part]
    full = tuple(parts)
    for recorded in [p for p in loader.origins if p[: len(full)] == full]:
        del loader.origins[recorded]
    loader.origins[full] = origin
    node[parts[-1]] = value if isinstance(value, (dict, list)) else _Raw(text.strip(), value)


def _child_type(tp: Any, key: str) -> Any:
    """The declared type of ``key`` inside ``tp`` (a section or a mapping), or None when unknown."""
    if tp is None:
        return None
    tp = _strip_none(tp)
    if typing.get_origin(tp) is dict:
        return typing.get_args(tp)[1]
    section = _section_type(tp)
    return _hints(section).get(key) if section is not None else None


def load_config(path: str | Path | None, schema: type[T], overrides: Sequence[str] = ()) -> T:
    """Read ``path`` (None or "" → all defaults), apply ``--set`` overrides in order, build and validate ``schema``.

    Raises ``ConfigError`` with a one-line message for every mistake a person can make.
    """
    source = str(path) if path else None
    loader = _Loader(source, schema)
    data = _read_yaml(Path(path), loader) if path else {}
    for override in overrides:
        _apply_override(data, override, loader)
    config = loader.build(schema, data, ())
    loader.validate(config, ())
    return config


def load_section(path: str | Path, schema: type[T], key: str, whole_file: bool = False) -> T | None:
    """The section at dotted ``key`` of a YAML file (e.g. a run's ``critic`` or ``sampling.frames``), built and
    validated as :func:`load_config` does, errors at file:line; None when the file has no such section, unless
    ``whole_file``: then the whole file is read as the section (a bare ``critic:`` body saved on its own)."""
    loader = _Loader(str(path), schema)
    document = _read_yaml(Path(path), loader)
    keypath: KeyPath = tuple(key.split("."))
    data: Any = document
    for part in keypath:
        data = data.get(part) if isinstance(data, dict) else None
    if data is None:
        if not whole_file:
            return None
        data = document  # the file is the section: its keys are named as the section's
        loader.origins = {keypath + where: line for where, line in loader.origins.items()}
    config = loader.build(schema, data, keypath)
    loader.validate(config, keypath)
    return config


# --------------------------------------------------------------------------------------------------------------------
# Writing configs


def config_to_dict(cfg: Any) -> Any:
    """Plain YAML-ready data in the dataclasses' field order (paths as str, tuples as lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


class _Dumper(yaml.SafeDumper):
    """Keeps non-ASCII text readable while quoting YAML 1.1 line breaks (NEL, LS, PS), which plain styles corrupt."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(c in text for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_config(cfg: Any) -> str:
    """The resolved config as YAML that ``load_config`` reads back to an equal object."""
    return yaml.dump(
        config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120
    )


def changed_keys(before_yaml: str, after_yaml: str) -> list[str]:
    """The dotted keys whose values differ between two dumped configs (added and removed keys included)."""

    def leaves(data: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(data, dict) and data:
            return {k: v for key, value in data.items() for k, v in leaves(value, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): data}

    before, after = leaves(yaml.safe_load(before_yaml) or {}), leaves(yaml.safe_load(after_yaml) or {})
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def save_config(cfg: Any, run_dir: str | Path) -> Path:
    """Write ``run_dir/config.yaml`` atomically, so a crash never leaves a half-written config beside checkpoints."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = RunDir(run_dir).config
    tmp = run_dir / f".config.yaml.{os.getpid()}.tmp"  # same directory, so os.replace is a rename
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(dump_config(cfg))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------------------------------------------------
# Reference


REQUIRED = "<required>"


def describe(schema: type, _defaults: Any = None, _prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every leaf key of ``schema`` as ``(dotted_key, type, default, help)``, in field order, for docs and listings.

    Nested sections are expanded; their leaves show the defaults of the parent's default section instance.
    """
    rows = []
    hints = _hints(schema)
    for f in dataclasses.fields(schema):
        if not f.init:
            continue
        key = f"{_prefix}{f.name}"
        if _defaults is not None:
            default = getattr(_defaults, f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            default = REQUIRED
        else:
            default = _field_default(f)
        section = _section_type(hints[f.name])
        item = _list_item_section(hints[f.name])
        if section is not None:
            instance = default if dataclasses.is_dataclass(default) else None
            rows.extend(describe(section, instance, key + "."))
        elif item is not None:  # a list of sections: the list, then each item's keys as key[].field
            rows.append((key, f"list of {item.__name__}", config_to_dict(default), f.metadata.get("help", "")))
            rows.extend(describe(item, None, key + "[]."))
        else:
            rows.append((key, type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return rows


def _list_item_section(tp: Any) -> type | None:
    """The dataclass ``X`` of a ``list[X]`` field, or None."""
    return _section_type(typing.get_args(tp)[0]) if typing.get_origin(tp) is list else None


def assert_all_fields_documented(schema: type, _prefix: str = "") -> None:
    """Fail with the list of fields (sections included, recursively) that have no ``help`` metadata."""
    missing = list(_undocumented(schema, _prefix))
    assert not missing, f"config fields without help: {', '.join(missing)}"


def _undocumented(schema: type, prefix: str) -> Iterator[str]:
    hints = _hints(schema)
    for f in dataclasses.fields(schema):
        if not f.init:
            continue
        if not str(f.metadata.get("help", "")).strip():
            yield prefix + f.name
        section = _section_type(hints[f.name])
        if section is not None:
            yield from _undocumented(section, f"{prefix}{f.name}.")
        item = _list_item_section(hints[f.name])
        if item is not None:
            yield from _undocumented(item, f"{prefix}{f.name}[].")
