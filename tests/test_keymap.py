"""Checkpoint key converters: one rule per key, unknown keys refused, every rule's example true."""

from __future__ import annotations

import inspect
import re
from types import ModuleType

import pytest

from armdistill import keymap
from armdistill.errors import FileFormatError
from armdistill.keymap import KeyMap
from armdistill.models import release
from armdistill.teachers import convert

# "# SOURCE_KEY -> OUR_KEY" (or "-> dropped") comment lines above the rules.
_EXAMPLE = re.compile(r"^\s*# ([\w.]+) -> ([\w.]+)", re.MULTILINE)


def _examples(module: ModuleType) -> list[tuple[str, str | None]]:
    found = [(src, None if dst == "dropped" else dst) for src, dst in _EXAMPLE.findall(inspect.getsource(module))]
    assert found, module.__name__
    return found


@pytest.mark.parametrize(
    "keys, modules",
    [(release.RELEASE_KEYS, (keymap, release)), (convert.ORIGINAL_KEYS, (keymap, convert))],
    ids=["release", "teacher"],
)
def test_every_rule_has_an_example_that_renames_as_its_comment_says(keys, modules):
    examples = [e for module in modules for e in _examples(module)]
    for src, dst in examples:
        assert keys.rename(src) == dst, src
    for pattern, _ in keys.rules:
        assert any(pattern.fullmatch(src) for src, _ in examples), f"no example for rule {pattern.pattern}"


@pytest.mark.parametrize("keys", [release.RELEASE_KEYS, convert.ORIGINAL_KEYS], ids=["release", "teacher"])
def test_unknown_keys_are_refused_by_name(keys):
    for key in ("encoder.layers.0.self_attn.bias_k", "encoder.pos_conv.0.weight", "w2v_encoder.proj.weight"):
        with pytest.raises(FileFormatError, match=re.escape(repr(key))):
            keys.rename(key)


def test_a_key_matching_two_rules_is_a_bug_in_the_table():
    keys = KeyMap("test checkpoint", [(r"a\.(\w+)", r"x.\1"), (r"a\.b", "y"), (r"c", None)])
    assert keys.rename("a.z") == "x.z" and keys.rename("c") is None
    with pytest.raises(RuntimeError, match="matches 2 rules"):
        keys.rename("a.b")
    with pytest.raises(FileFormatError, match=r"unrecognised key in the test checkpoint: 'a'"):
        keys.rename("a")
