"""Token bucket for client frames (pure: time is passed in)."""

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float = -1.0
    stamp: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:  # first use: start full
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
