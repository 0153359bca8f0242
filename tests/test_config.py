"""Strict configs: types, unknown keys, dotted overrides, errors that name the key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from armdistill.checks import check_range
from armdistill.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict


@dataclass
class Inner:
    p: float = 0.5
    kind: Literal["a", "b"] = "a"

    def __post_init__(self):
        check_range("p", self.p, ge=0, le=1)


@dataclass
class Outer:
    lr: float = 1.0
    steps: int = 10
    name: str | None = None
    sizes: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


def test_overrides_parse_yaml_scalars_and_exponent_floats():
    data = apply_overrides({"inner": {"kind": "a"}}, ["lr=5e-3", "steps=7", "inner.kind=b", "sizes=[1, 2]", "name=x"])
    cfg = from_dict(Outer, data)
    assert cfg == Outer(lr=0.005, steps=7, name="x", sizes=[1, 2], inner=Inner(kind="b"))
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data,message",
    [
        ({"stpes": 3}, "'stpes'"),
        ({"inner": {"q": 1}}, "'inner.q'"),
        ({"steps": 2.5}, "steps: expected an integer"),
        ({"steps": True}, "steps: expected an integer"),
        ({"lr": "fast"}, "lr: expected a number"),
        ({"inner": {"kind": "c"}}, "inner.kind"),
        ({"inner": {"p": 2.0}}, r"inner\.p: expected a value in \[0, 1\], got 2\.0"),
        ({"sizes": [1, "x"]}, r"sizes\[1\]"),
    ],
)
def test_errors_name_the_dotted_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


@dataclass
class SelfNaming:
    n: int = 1

    def __post_init__(self):
        check_range("section.n", self.n, ge=0)


@dataclass
class Top:
    section: SelfNaming = field(default_factory=SelfNaming)


@dataclass
class Root:
    top: Top = field(default_factory=Top)


def test_nested_errors_carry_the_prefix_once():
    with pytest.raises(ConfigError, match=r"^top\.section\.n: expected a value >= 0, got -1$"):
        from_dict(Root, {"top": {"section": {"n": -1}}})


def test_bad_override_and_yaml_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"lr": 1.0}, ["lr.x=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
