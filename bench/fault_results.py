"""What a fault scenario measured: per device, what arrived against what was published for its
user (delivered, duplicates, gaps, lost, resyncs, delays), summed into one Result row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.fault_clients import Load

SLOW_S = 1.0  # an event slower than this counts as "not yet recovered"


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


# -- results ------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    fault: str
    published: int = 0  # events accepted by the producer's daprd
    expected: int = 0  # sum over devices of their user's published events
    delivered: int = 0  # distinct published events received, summed over devices
    min_device_ratio: float = 0.0  # worst device: delivered / published for its user
    duplicates: int = 0
    gaps: int = 0
    lost: int = 0  # never delivered to a device that got no resync_required
    skipped_by_resync: int = 0  # not delivered, on a device told to resync (it reloads)
    resync_required: int = 0
    resync_reasons: dict[str, int] = field(default_factory=dict)
    silent_epoch_changes: int = 0
    publish_retries: int = 0
    reconnects: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    delay_p50_s: float = 0.0
    delay_p99_s: float = 0.0
    delay_max_s: float = 0.0
    fault_p99_s: float = 0.0  # delay p99 of events published in [fault - 1 s, fault + 5 s]
    fault_max_s: float = 0.0
    recover_s: float = 0.0  # from the fault to the last event slower than SLOW_S arriving
    drained: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.drained and self.duplicates == 0 and self.gaps == 0 and self.lost == 0
                and self.silent_epoch_changes == 0)


def evaluate(load: Load, name: str, fault: str, fault_at: float | None, drained: bool) -> Result:
    r = Result(name=name, fault=fault, drained=drained)
    r.published = sum(len(p) for p in load.published.values())
    r.publish_retries = load.publish_failures
    delays: list[float] = []
    around: list[float] = []
    slow_until = fault_at or 0.0
    ratios = []
    for d in load.devices:
        pub = load.published[d.user]
        r.expected += len(pub)
        have = [e for e in pub if e in d.got]
        r.delivered += len(have)
        ratios.append(len(have) / len(pub) if pub else 1.0)
        missing = len(pub) - len(have)
        if d.resyncs:
            r.skipped_by_resync += missing
        else:
            r.lost += missing
        r.duplicates += d.dup_ids + d.dup_seqs
        r.gaps += d.gaps
        r.resync_required += len(d.resyncs)
        for reason in d.resyncs:
            r.resync_reasons[reason] = r.resync_reasons.get(reason, 0) + 1
        r.silent_epoch_changes += d.silent_epoch_changes
        r.reconnects += max(0, d.connects - 1)
        for code, n in d.closes.items():
            r.close_codes[str(code)] = r.close_codes.get(str(code), 0) + n
        for e in have:
            delay = d.got[e] - pub[e]
            delays.append(delay)
            if fault_at is not None and fault_at - 1 <= pub[e] <= fault_at + 5:
                around.append(delay)
            if fault_at is not None and delay > SLOW_S and pub[e] >= fault_at - 5:
                slow_until = max(slow_until, d.got[e])
    r.min_device_ratio = round(min(ratios), 4) if ratios else 1.0
    r.delay_p50_s = round(pct(delays, 50), 3)
    r.delay_p99_s = round(pct(delays, 99), 3)
    r.delay_max_s = round(max(delays, default=0.0), 3)
    r.fault_p99_s = round(pct(around, 99), 3)
    r.fault_max_s = round(max(around, default=0.0), 3)
    if fault_at is not None:
        r.recover_s = round(max(0.0, slow_until - fault_at), 2)
    return r
