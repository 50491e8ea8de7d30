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
MAX_ALIASES = 1000
_ANCHOR = re.compile(rb"(^|[\s\[{,:-])[&*][^\s,\[\]{}]")
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(ValueError):
    """The file is not YAML we accept; the message says where and why."""


class _CheckedLoader(yaml.SafeLoader):
    """Pure-Python safe loader that counts aliases and nesting while composing."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

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


def load_yaml(raw: bytes) -> Any:
    if len(raw) > MAX_BYTES:
        raise YamlError(f"file larger than {MAX_BYTES // (1024 * 1024)} MiB")
    loader = _CheckedLoader if _ANCHOR.search(raw) else _FastLoader
    try:
        return yaml.load(raw, Loader=loader)  # noqa: S506 - both loaders are safe loaders
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise YamlError(f"invalid YAML: {where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlError(f"nested deeper than {MAX_DEPTH} levels") from None
