"""Reconnect backoff of the Python client: growth, cap, jitter bounds, reset."""

import random
from typing import Any

import pytest

from clients.pyclient.backoff import Backoff


class Fixed(random.Random):
    """random() always returns the same value: pins the jitter draw."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("initial", "maximum", "factor", "expected"),
    [
        (0.25, 10.0, 2.0, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),
        (1.0, 3.0, 3.0, [1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]),
        (0.5, 0.5, 2.0, [0.5] * 8),
        (0.1, 1.0, 1.0, [0.1] * 8),  # factor 1: constant delay
    ],
)
def test_base_delay_grows_geometrically_up_to_the_cap(
    initial: float, maximum: float, factor: float, expected: list[float]
) -> None:
    b = Backoff(initial, maximum, factor, jitter=0.0)
    assert [b.next() for _ in expected] == pytest.approx(expected)
    assert b.attempt == len(expected)


@pytest.mark.parametrize(
    ("draw", "jitter", "attempt", "expected"),
    [
        (0.0, 0.5, 1, 0.25),  # no jitter drawn: the full base
        (0.999999, 0.5, 1, 0.125),  # the most jitter: half the base
        (0.5, 0.5, 3, 0.75),  # base 1.0, a quarter off
        (0.999999, 1.0, 4, 0.0),  # full jitter may go to (almost) zero
        (0.7, 0.0, 6, 8.0),  # jitter 0 ignores the draw
    ],
)
def test_jitter_only_shortens_the_delay(
    draw: float, jitter: float, attempt: int, expected: float
) -> None:
    b = Backoff(0.25, 10.0, 2.0, jitter, rng=Fixed(draw))
    delays = [b.next() for _ in range(attempt)]
    assert delays[-1] == pytest.approx(expected, abs=1e-5)


def test_jittered_delays_stay_within_bounds() -> None:
    b = Backoff(0.25, 10.0, 2.0, 0.5, rng=random.Random(42))
    for n in range(1, 200):
        d = b.next()
        base = b.base(n)
        assert base * 0.5 <= d <= base


def test_reset_starts_again_from_the_initial_delay() -> None:
    b = Backoff(0.25, 10.0, 2.0, jitter=0.0)
    for _ in range(5):
        b.next()
    b.reset()
    assert b.attempt == 0
    assert b.next() == pytest.approx(0.25)


def test_thousands_of_failures_do_not_overflow() -> None:
    b = Backoff(0.25, 10.0, 2.0, jitter=0.0)
    assert b.base(5000) == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0.0},
        {"initial": -1.0},
        {"initial": 5.0, "maximum": 1.0},
        {"factor": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
