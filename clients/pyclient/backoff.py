"""Jittered exponential backoff for reconnects."""

from __future__ import annotations

import random


class Backoff:
    """Delay for the n-th consecutive failed attempt: ``initial * factor**(n-1)`` capped at
    ``maximum``, then shortened by up to ``jitter`` (a fraction) so that many clients dropped by
    the same replica do not all come back in the same instant."""

    def __init__(
        self,
        initial: float = 0.25,
        maximum: float = 10.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not initial > 0 or not maximum >= initial or not factor >= 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def base(self, attempt: int) -> float:
        """The un-jittered delay of attempt n (1-based)."""
        try:
            raw = self.initial * self.factor ** max(0, attempt - 1)
        except OverflowError:  # thousands of failures in a row: simply the cap
            return self.maximum
        return min(self.maximum, raw)

    def next(self) -> float:
        """Count one more failed attempt and return how long to wait before the next."""
        self.attempt += 1
        return self.base(self.attempt) * (1 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """A connection reached welcome: the next failure starts from the initial delay."""
        self.attempt = 0
