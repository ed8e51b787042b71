"""Reports the cells of the compatibility matrix (tests/matrix/README.md).

A program that covers a scenario of tests/matrix/scenarios.json calls `report(client, scenario,
ok, detail)` once, when that scenario has ended. With TIDEPOOL_MATRIX unset it does nothing; with
it set, one JSON line is appended to that file (a line is one write, so programs running at once
do not interleave).
"""

import json
import os

RESULTS = ("pass", "fail", "skip")


def report(client, scenario, result, detail=""):
    """result: True/False or one of RESULTS; skip and fail need a detail saying why."""
    if result is True:
        result = "pass"
    elif result is False:
        result = "fail"
    if result not in RESULTS:
        raise ValueError(f"matrix result {result!r} is not one of {RESULTS}")
    if result != "pass" and not detail:
        raise ValueError(f"matrix {client}/{scenario}: a {result} needs a detail")
    print(f"MATRIX {client} {scenario} {result.upper()}{' ' + detail if detail else ''}", flush=True)
    path = os.environ.get("TIDEPOOL_MATRIX")
    if not path:
        return
    line = json.dumps({"client": client, "scenario": scenario, "result": result, "detail": detail})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
