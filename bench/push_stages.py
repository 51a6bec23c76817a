"""Where a quiet push round's time goes, stage by stage, from the push worker's own clock.

Not kept in the code (it prints a line per round): apply the trace, run the propagation bench at a quiet rate, read
the pusher's log, and take the trace out again.

    git apply bench/push_stages.patch
    .venv/bin/python bench/propagation.py --rates 10 --seconds 15 --drain 20 --shopify-plan plus --bigcommerce-plan pro
    .venv/bin/python bench/push_stages.py            # reads /tmp/tally_bench_propagation/pusher0.log
    git apply -R bench/push_stages.patch && git checkout bench/results/

Rounds carrying a change older than 200 ms at the start of the task are left out (Amazon's backlog, retries): the
table is the path of a change pushed as soon as it is made.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

LOG = Path("/tmp/tally_bench_propagation/pusher0.log")


def rounds(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if "TRACE " not in line:
            continue
        message = json.loads(line)["message"] if line.startswith("{") else line
        trace = json.loads(message[message.index("TRACE ") + 6:])
        if "answers" in trace and "attempted" in trace and trace["task"] - trace["oldest"] < 0.2:
            out.append(trace)
    return out


def main() -> None:
    traces = rounds(Path(sys.argv[1]) if len(sys.argv) > 1 else LOG)
    if not traces:
        sys.exit(f"no quiet rounds traced in {LOG}: apply bench/push_stages.patch and run the bench first")
    stages = {
        "stock write -> push task starts": lambda t: t["task"] - t["oldest"],
        "tokens checked": lambda t: t["tokened"] - t["task"],
        "claim": lambda t: t["claimed"] - t["tokened"],
        "stock snapshot": lambda t: t["snap"] - t["claimed"],
        "attempted numbers recorded": lambda t: t["attempted"] - t["snap"],
        "first request out": lambda t: min(t["sends"]) - t["attempted"],
        "requests answered (first out -> last answer)": lambda t: max(t["answers"]) - min(t["sends"]),
        "  last request out after the first": lambda t: max(t["sends"]) - min(t["sends"]),
        "stock write -> last answer": lambda t: max(t["answers"]) - t["oldest"],
        "last answer -> recorded": lambda t: t["end"] - max(t["answers"]),
    }
    print(f"{len(traces)} rounds, channels a round p50 {statistics.median(t['n'] for t in traces):.0f}\n")
    print("| stage | p50 ms | p90 ms |\n|---|---:|---:|")
    for name, of in stages.items():
        values = sorted(of(t) * 1000 for t in traces)
        print(f"| {name} | {statistics.median(values):.1f} | {values[len(values) * 9 // 10]:.1f} |")


if __name__ == "__main__":
    main()
