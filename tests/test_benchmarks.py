"""benchmarks/profile.py: each sample of a Node CPU profile is charged to the right part of a synth."""
from __future__ import annotations

from benchmarks.profile import split

KERNEL = "file:///tmp/tmpabc/lib/program.js"
CDKTF = "file:///tmp/jsii-kernel-x/node_modules/cdktf/lib/tokens/private/resolve.js"


def frame(node_id: int, function: str, url: str, *children: int) -> dict:
    return {"id": node_id, "callFrame": {"functionName": function, "url": url}, "children": list(children)}


PROFILE = {
    "nodes": [
        frame(1, "(root)", "", 2, 7, 9),
        frame(2, "processRequest", KERNEL, 3, 4, 5),
        frame(3, "read", ""),                                            # waiting for the next request
        frame(4, "resolve", CDKTF, 6),
        frame(5, "Module._load", "node:internal/modules/cjs/loader", 8),
        frame(6, "captureStackTrace", ""),                               # native, called by cdktf
        frame(7, "(garbage collector)", ""),
        frame(8, "resolve", CDKTF),                                      # cdktf code run while it is being required
        frame(9, "processImmediate", "node:internal/timers"),
    ],
    "samples": [3, 3, 4, 6, 2, 8, 7, 9],
    "timeDeltas": [1000, 1000, 2000, 3000, 500, 4000, 250, 125],
}


def test_each_sample_is_charged_to_its_innermost_part_with_waiting_and_loading_first():
    assert split(PROFILE) == {"waiting": 2.0, "module load": 4.0, "jsii kernel": 0.5, "cdktf": 5.0, "gc": 0.25,
                              "other": 0.125}
