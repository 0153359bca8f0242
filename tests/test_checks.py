"""The shared validation checks: one wording, ``KEY: expected WHAT, got VALUE``, and the error class asked for."""

import pytest
import torch

from armdistill.checks import check_choice, check_range, check_shape
from armdistill.config import ConfigError
from armdistill.errors import FileFormatError, UserError


@pytest.mark.parametrize(
    "bounds,value,message",
    [
        ({"gt": 0}, 0, "x: expected a value > 0, got 0"),
        ({"ge": 1}, 0, "x: expected a value >= 1, got 0"),
        ({"lt": 8000.0}, 9000.0, "x: expected a value < 8000, got 9000.0"),
        ({"le": 1}, 1.5, "x: expected a value <= 1, got 1.5"),
        ({"ge": 0, "lt": 1}, 1.0, "x: expected a value in [0, 1), got 1.0"),
        ({"gt": 0, "le": 1}, 0.0, "x: expected a value in (0, 1], got 0.0"),
        ({"ge": 1, "null": True}, 0, "x: expected a value >= 1 or null, got 0"),
        ({"ge": 1}, None, "x: expected a value >= 1, got None"),
        ({"ge": 0, "le": 1}, float("nan"), "x: expected a value in [0, 1], got nan"),
    ],
)
def test_check_range_refuses_values_outside_the_bounds(bounds, value, message):
    with pytest.raises(ConfigError) as info:
        check_range("x", value, **bounds)
    assert str(info.value) == message


def test_check_range_accepts_the_bounds_themselves_and_null_when_allowed():
    check_range("x", 0, ge=0, le=1)
    check_range("x", 1, ge=0, le=1)
    check_range("x", 1e-9, gt=0)
    check_range("x", None, gt=0, null=True)


def test_checks_raise_the_error_class_asked_for():
    with pytest.raises(ValueError) as info:
        check_range("rank", 2, ge=0, lt=2, error=ValueError)
    assert type(info.value) is ValueError and str(info.value) == "rank: expected a value in [0, 2), got 2"
    with pytest.raises(FileFormatError, match=r"^f\.json: task: expected one of \['a', 'b'\], got 'c'$"):
        check_choice("f.json: task", "c", ["a", "b"], error=FileFormatError)
    # config checks are user errors (one CLI line, exit 2); shape checks guard our own API (tracebacks)
    assert issubclass(ConfigError, UserError)
    with pytest.raises(ValueError) as info:
        check_shape("wav", torch.zeros(3), ("batch", "samples"))
    assert not isinstance(info.value, UserError)


def test_check_choice_lists_the_choices_in_order():
    check_choice("mode", "b", ("a", "b"))
    with pytest.raises(ConfigError) as info:
        check_choice("mode", "z", ("b", "a"))
    assert str(info.value) == "mode: expected one of ['b', 'a'], got 'z'"


def test_check_shape_checks_rank_fixed_sizes_and_dtype():
    x = torch.zeros(2, 7, dtype=torch.bool)
    check_shape("mask", x, (2, 7), dtype=torch.bool)
    check_shape("mask", x, ("batch", 7))
    cases = [
        ((2, 9), None, "mask: expected shape [2, 9], got [2, 7]"),
        (("batch",), None, "mask: expected shape [batch], got [2, 7]"),
        (("batch", "frames", "dim"), None, "mask: expected shape [batch, frames, dim], got [2, 7]"),
        ((2, 7), torch.float32, "mask: expected dtype torch.float32, got torch.bool"),
    ]
    for shape, dtype, message in cases:
        with pytest.raises(ValueError) as info:
            check_shape("mask", x, shape, dtype=dtype)
        assert str(info.value) == message
