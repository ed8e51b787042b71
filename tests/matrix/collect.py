#!/usr/bin/env python3
"""Builds the compatibility matrix from the cells the client programs reported (README.md here).

    collect.py --peer tidepool=FILE --peer kafka=FILE [--readme README.md] [--json OUT]

Each FILE holds the JSON lines one run of every client program appended against that peer.
Cells reported more than once are combined: any fail fails, any pass passes the rest, skip only
when every report skipped. Exits 1 when a cell is missing or failed on any peer, or a skip is
not the same on every peer (a skip names what the client lacks, so it cannot depend on the
broker); with --readme, rewrites the table between the markers either way, so the README shows
what the run found.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN = "<!-- matrix:begin -->"
END = "<!-- matrix:end -->"
PEER_TITLES = {"tidepool": "Tidepool", "kafka": "Apache Kafka 4.3.1"}


@dataclass(frozen=True)
class Cell:
    result: str  # pass | fail | skip | missing
    detail: str = ""


def load_catalog() -> tuple[list[dict], list[dict]]:
    catalog = json.loads((HERE / "scenarios.json").read_text())
    return catalog["clients"], catalog["scenarios"]


def read_reports(path: Path, clients: set[str], scenarios: set[str]) -> tuple[dict, list[str]]:
    """(client, scenario) → the reports of that cell; plus complaints about malformed lines."""
    reports: dict[tuple[str, str], list[Cell]] = {}
    problems: list[str] = []
    if not path.exists():
        return reports, [f"{path}: no such file (no program reported against this peer)"]
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            client, scenario, result = entry["client"], entry["scenario"], entry["result"]
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"{path}:{number}: unreadable report ({error}): {line[:120]}")
            continue
        if client not in clients or scenario not in scenarios or result not in ("pass", "fail", "skip"):
            problems.append(f"{path}:{number}: unknown client, scenario or result: {line[:120]}")
            continue
        reports.setdefault((client, scenario), []).append(Cell(result, str(entry.get("detail", ""))))
    return reports, problems


def combine(cells: list[Cell] | None) -> Cell:
    if not cells:
        return Cell("missing", "no program reported this cell")
    for wanted in ("fail", "pass"):
        found = [cell for cell in cells if cell.result == wanted]
        if found:
            return Cell(wanted, "; ".join(cell.detail for cell in found if cell.detail))
    return Cell("skip", cells[0].detail)


def matrix(peers: dict[str, Path]) -> tuple[dict, list[str]]:
    clients, scenarios = load_catalog()
    client_ids = {client["id"] for client in clients}
    scenario_ids = {scenario["id"] for scenario in scenarios}
    table: dict[str, dict[tuple[str, str], Cell]] = {}
    problems: list[str] = []
    for peer, path in peers.items():
        reports, complaints = read_reports(path, client_ids, scenario_ids)
        problems += complaints
        table[peer] = {
            (client["id"], scenario["id"]): combine(reports.get((client["id"], scenario["id"])))
            for client in clients
            for scenario in scenarios
        }
    for client in clients:
        for scenario in scenarios:
            key = (client["id"], scenario["id"])
            cells = {peer: table[peer][key] for peer in peers}
            for peer, cell in cells.items():
                if cell.result in ("fail", "missing"):
                    problems.append(f"{client['id']} / {scenario['id']} on {peer}: {cell.result}: {cell.detail}")
            skipped = {peer for peer, cell in cells.items() if cell.result == "skip"}
            if skipped and skipped != set(peers):
                problems.append(f"{client['id']} / {scenario['id']}: skipped on {sorted(skipped)} only; "
                                "a skip names what the client lacks and cannot depend on the broker")
    return table, problems


def render(table: dict, peers: list[str]) -> str:
    clients, scenarios = load_catalog()
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return str(notes.index(text) + 1)

    lines = [
        "| client | " + " | ".join(scenario["title"] for scenario in scenarios) + " |",
        "|---|" + "---|" * len(scenarios),
    ]
    for client in clients:
        row = []
        for scenario in scenarios:
            cells = {peer: table[peer][(client["id"], scenario["id"])] for peer in peers}
            results = {cell.result for cell in cells.values()}
            if results == {"pass"}:
                row.append("✓")
            elif results == {"skip"}:
                row.append(f"–<sup>{note(next(iter(cells.values())).detail)}</sup>")
            else:
                bad = [f"{PEER_TITLES.get(peer, peer)}: {cell.result}"
                       + (f" ({cell.detail[:200]})" if cell.detail else "")
                       for peer, cell in cells.items() if cell.result != "pass"]
                row.append(f"✗<sup>{note('; '.join(bad))}</sup>")
        lines.append(f"| {client['name']} | " + " | ".join(row) + " |")
    legend = [
        "",
        f"✓: passed against {' and '.join(PEER_TITLES.get(peer, peer) for peer in peers)} in the "
        "same run; –: the client lacks it; ✗: failed or not reported (the run fails).",
        "",
    ]
    legend += [f"{number}. {text}" for number, text in enumerate(notes, 1)]
    what = ["", "What each column runs (tests/matrix/scenarios.json):", ""]
    what += [f"- **{scenario['title']}**: {scenario['what']}" for scenario in scenarios]
    return "\n".join(lines + legend + what)


def rewrite_readme(readme: Path, text: str) -> None:
    content = readme.read_text()
    start, end = content.find(BEGIN), content.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} markers")
    readme.write_text(content[: start + len(BEGIN)] + "\n" + text + "\n" + content[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", action="append", required=True, metavar="NAME=FILE")
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--json", type=Path, help="also write the combined cells as JSON")
    args = parser.parse_args(argv)
    peers = dict(entry.split("=", 1) for entry in args.peer)
    table, problems = matrix({peer: Path(path) for peer, path in peers.items()})
    text = render(table, list(peers))
    print(text)
    if args.readme:
        rewrite_readme(args.readme, text)
    if args.json:
        args.json.write_text(json.dumps(
            {peer: [{"client": c, "scenario": s, "result": cell.result, "detail": cell.detail}
                    for (c, s), cell in cells.items()] for peer, cells in table.items()}, indent=1))
    for problem in problems:
        print(f"MATRIX PROBLEM: {problem}", file=sys.stderr)
    print(f"matrix: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
