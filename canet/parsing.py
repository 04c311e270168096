"""YAML and JSON text as canet reads it (configs, ``--set`` values, datalists).

Two departures from ``yaml.safe_load`` / ``json.loads``, both against silent
surprises:

* A key written twice in one mapping is refused (:class:`DuplicateKeyError`).
  Both libraries keep the last one without a word, so a second ``loss:``
  block would replace an ablation's settings and a second ``training:`` list
  would drop the first one's cases.
* YAML floats may be written as ``1e-3`` (YAML 1.2, JSON and Python spell them
  so); PyYAML follows YAML 1.1, which needs a dot (``1.0e-3``) and reads
  ``1e-3`` as a string.
* In configs and ``--set`` values, numbers that YAML 1.1 reads otherwise than
  they look are refused (:class:`AmbiguousNumberError`): ``010`` is 8 (octal),
  ``1:00`` is 60 (base 60), where a reader sees 10 and a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

import yaml

__all__ = ["AmbiguousNumberError", "DuplicateKeyError", "YamlValueError", "dump_yaml", "parse_json", "parse_yaml"]


class YamlValueError(ValueError):
    """Text that parses, but whose reading canet refuses; the message says why and where."""


class DuplicateKeyError(YamlValueError):
    """A mapping holds the same key twice; the message names it (and its lines in YAML)."""


class AmbiguousNumberError(YamlValueError):
    """A plain number that YAML 1.1 reads as another value than it looks (``010`` = 8, ``1:00`` = 60)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeConstructor says so itself
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise DuplicateKeyError(f"key {key!r} appears twice (lines {first} and {line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _AsWrittenLoader(_StrictLoader):
    """_StrictLoader that keeps the plain scalars under :attr:`as_written` keys as their text.

    YAML 1.1 reads ``010`` as 8, ``0x1A`` as 26, ``1:10`` as 70, ``1.10`` as 1.1 and ``yes``
    as True; for an identifier such as a case id the text is what was meant.
    """

    as_written: frozenset[str] = frozenset()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key_node, value_node in node.value:
            if (
                isinstance(key_node, yaml.ScalarNode) and key_node.value in self.as_written
                and isinstance(value_node, yaml.ScalarNode) and value_node.style is None
                and value_node.tag in _RETYPED_TAGS
            ):
                value_node.tag = "tag:yaml.org,2002:str"
        return super().construct_mapping(node, deep=deep)


#: The implicit types whose text YAML 1.1 rewrites (null stays null: no value).
_RETYPED_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "timestamp"))


class _Loader(_StrictLoader):
    """_StrictLoader that also reads ``1e-3`` as a float and refuses octal and base-60 numbers."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value: int = super().construct_yaml_int(node)
        digits = str(node.value).replace("_", "").lstrip("+-")
        if ":" in digits or (len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXbB"):
            raise AmbiguousNumberError(
                f"{node.value!r} (line {node.start_mark.line + 1}) is read by YAML 1.1 as {value}; "
                f"write {value} if that is meant, or quote it for a string"
            )
        return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value: float = super().construct_yaml_float(node)
        if ":" in str(node.value):
            raise AmbiguousNumberError(
                f"{node.value!r} (line {node.start_mark.line + 1}) is read by YAML 1.1 as {value} (base 60); "
                f"write {value} if that is meant, or quote it for a string"
            )
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes strings :class:`_Loader` would read as floats (``"1e3"``)."""


# Exponent floats without a dot, e.g. 1e-3, 5E4, -2e+1 (YAML 1.1 wants 1.0e-3).
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml(text: str, exponent_floats: bool = True, as_written: Collection[str] = ()) -> Any:
    """``text`` as YAML (safe types only).

    Args:
        text: the YAML text.
        exponent_floats: read ``1e-3`` as a float (configs); ``False`` keeps
            PyYAML's reading, a string (datalists, whose case ids such as
            ``12e45`` must stay as written).
        as_written: keys whose plain scalar values stay the text as written
            (a datalist's ``id: 010`` is ``"010"``, not 8); only with
            ``exponent_floats=False``.

    Raises:
        DuplicateKeyError: a key repeated in one mapping.
        yaml.YAMLError: text that is not YAML.
    """
    if as_written:
        if exponent_floats:
            raise ValueError("as_written keys need exponent_floats=False")
        loader: type[yaml.SafeLoader] = type("_Keys", (_AsWrittenLoader,), {"as_written": frozenset(as_written)})
    else:
        loader = _Loader if exponent_floats else _StrictLoader
    return yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoaders


def dump_yaml(data: Any) -> str:
    """``data`` as YAML that :func:`parse_yaml` reads back the same (a string ``"1e3"`` is quoted)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None)


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {key!r} appears twice in one object; keep one")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """``text`` as JSON.

    Raises:
        DuplicateKeyError: a key repeated in one object.
        json.JSONDecodeError: text that is not JSON.
    """
    return json.loads(text, object_pairs_hook=_refuse_repeats)
