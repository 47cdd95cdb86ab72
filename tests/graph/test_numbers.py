from __future__ import annotations

import pytest

from studio.graph.numbers import is_finite_number, is_finite_pair


@pytest.mark.parametrize("value", [0, -3, 2.5, 1e300])
def test_ints_and_finite_floats_are_numbers(value):
    assert is_finite_number(value)


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), -float("inf"), "1", None, [1]])
def test_bools_non_finite_floats_and_other_values_are_not_numbers(value):
    assert not is_finite_number(value)


def test_a_bound_limits_the_distance_from_zero():
    assert is_finite_number(-100, bound=100) and not is_finite_number(100.5, bound=100)


def test_a_pair_is_exactly_two_finite_numbers():
    assert is_finite_pair([1, 2.5]) and is_finite_pair((0, 0))
    assert not is_finite_pair([1, 2, 3]) and not is_finite_pair([1]) and not is_finite_pair([1, True])
    assert not is_finite_pair({"0": 1, "1": 2}) and not is_finite_pair([1, float("nan")])
    assert not is_finite_pair([1, 500], bound=100)
