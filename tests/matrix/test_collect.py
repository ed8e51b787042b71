"""collect.py fails the run for every cell that is missing, failed or skipped on one peer only."""

import json
import tempfile
import unittest
from pathlib import Path

import collect

CLIENTS, SCENARIOS = collect.load_catalog()


def every_cell(result="pass"):
    return [{"client": c["id"], "scenario": s["id"], "result": result, "detail": ""}
            for c in CLIENTS for s in SCENARIOS]


class Collect(unittest.TestCase):
    def run_with(self, tidepool, kafka):
        with tempfile.TemporaryDirectory() as directory:
            paths = {}
            for peer, lines in (("tidepool", tidepool), ("kafka", kafka)):
                path = Path(directory) / f"{peer}.jsonl"
                path.write_text("".join(json.dumps(line) + "\n" for line in lines))
                paths[peer] = path
            return collect.matrix(paths)

    def test_every_cell_passing_on_both_peers_is_no_problem(self):
        table, problems = self.run_with(every_cell(), every_cell())
        self.assertEqual(problems, [])
        self.assertNotIn("✗<sup>", collect.render(table, ["tidepool", "kafka"]))

    def test_a_missing_cell_is_a_problem(self):
        _, problems = self.run_with(every_cell()[1:], every_cell())
        self.assertEqual(len(problems), 1)
        self.assertIn("missing", problems[0])

    def test_one_failed_report_fails_a_cell_that_another_program_passed(self):
        failed = dict(every_cell()[0], result="fail", detail="record 7 lost")
        table, problems = self.run_with(every_cell() + [failed], every_cell())
        self.assertEqual(len(problems), 1)
        self.assertIn("record 7 lost", problems[0])
        self.assertIn("✗<sup>", collect.render(table, ["tidepool", "kafka"]))

    def test_a_skip_on_one_peer_only_is_a_problem(self):
        skipped = [dict(cell, result="skip", detail="lacks it") if index == 0 else cell
                   for index, cell in enumerate(every_cell())]
        _, problems = self.run_with(skipped, every_cell())
        self.assertEqual(len(problems), 1)
        _, problems = self.run_with(skipped, skipped)
        self.assertEqual(problems, [])

    def test_unknown_clients_and_scenarios_are_reported(self):
        stray = {"client": "nobody", "scenario": "codec-none", "result": "pass"}
        _, problems = self.run_with(every_cell() + [stray], every_cell())
        self.assertEqual(len(problems), 1)


if __name__ == "__main__":
    unittest.main()
