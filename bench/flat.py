"""Summarise a py-spy raw (collapsed) profile: share of samples per function, self and inclusive.

    .venv/bin/python -m bench.flat /tmp/sessions.app-300.txt [--top 30]
"""

import argparse
import collections
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(args.path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].split(":")[0].rstrip(")")
                  for f in stack.split(";")]
        total += count
        for f in set(frames):
            incl[f] += count
        self_[frames[-1]] += count
    print(f"{total} samples")
    print("-- inclusive")
    for f, n in incl.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {f}")
    print("-- self")
    for f, n in self_.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {f}")


if __name__ == "__main__":
    main()
