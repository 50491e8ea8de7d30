"""YAML from files we do not fully trust: size, nesting and alias limits, safe types only.

A zone file full of anchors (the "billion laughs") or nested thousands deep is refused with a
clear error instead of eating memory or the stack. Files without anchors take the fast C loader.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
# octoDNS's YamlProvider writes an anchor for every value object records share (anchors in its
# source files come back out as anchors), so big octoDNS-written zones carry many aliases; the
# expansion limit below is what stops a YAML bomb.
MAX_ALIASES = 100_000
MAX_EXPANDED = 2_000_000  # nodes after expanding every alias
_ANCHOR = re.compile(rb"(^|[\s\[{,:-])[&*][^\s,\[\]{}]")
_BRACKET = re.compile(rb"[\[\]{}]")
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(ValueError):
    """The file is not YAML we accept; the message says where and why."""


class _CheckedLoader(yaml.SafeLoader):
    """Pure-Python safe loader that counts aliases and nesting while composing."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_document(self) -> Any:
        node = super().compose_document()
        if expanded_size(node, {}) > MAX_EXPANDED:
            raise YamlError(f"aliases expand to more than {MAX_EXPANDED} nodes (a YAML bomb)")
        return node

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlError(f"more than {MAX_ALIASES} aliases (refusing a YAML bomb)")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Node count with aliases expanded, computed in linear time over the shared graph."""
    known = memo.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(expanded_size(k, memo) + expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size = min(size, MAX_EXPANDED + 1)
    return size


def too_deep_for_c(raw: bytes) -> bool:
    """True when the document nests deeper than MAX_DEPTH, found without recursing.

    libyaml's composer recurses once per level and overflows the C stack near 30,000 levels
    (a segfault, not an exception). Its parser does not recurse, so its events are walked
    first when the file has enough ``[``/``{`` bytes to be that deep; quotes and comments
    are the parser's business, so a ``]`` in a string cannot hide a level. Block nesting
    that deep cannot fit under MAX_BYTES."""
    if len(_BRACKET.findall(raw)) <= MAX_DEPTH:
        return False
    depth = 0
    try:
        for event in yaml.parse(raw, Loader=_FastLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return True
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        # libyaml may stop on its own nesting limit before yielding a deep event; the
        # checked pure-Python loader then either finds the depth itself or reports the
        # same syntax error, in gslb's words either way.
        return True
    return False


def load_yaml(raw: bytes) -> Any:
    if len(raw) > MAX_BYTES:
        raise YamlError(f"file larger than {MAX_BYTES // (1024 * 1024)} MiB")
    checked = _ANCHOR.search(raw) or too_deep_for_c(raw)
    loader = _CheckedLoader if checked else _FastLoader
    try:
        data = yaml.load(raw, Loader=loader)  # noqa: S506 - both loaders are safe loaders
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise YamlError(f"invalid YAML: {where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlError(f"nested deeper than {MAX_DEPTH} levels") from None
    if too_deep(data):
        raise YamlError(f"nested deeper than {MAX_DEPTH} levels")
    return data


def too_deep(data: Any) -> bool:
    """Iterative depth check of loaded data (the C loader has no depth limit of its own)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            stack.extend((value, depth + 1) for value in item)
    return False
