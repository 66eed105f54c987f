"""``hx oracle|mark|funding explain`` on the shipped examples and on bad files; ``hx bench oracle``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from oracle_harness import ROOT

from hx.cli import main

EXAMPLES = ROOT / "examples" / "explain"


@pytest.mark.parametrize("tool", ["oracle", "mark", "funding"])
def test_explain_prints_text_and_json_for_the_examples(tool: str) -> None:
    text = CliRunner().invoke(main, [tool, "explain", str(EXAMPLES / f"{tool}.json")])
    assert text.exit_code == 0, text.output
    as_json = CliRunner().invoke(main, [tool, "explain", str(EXAMPLES / f"{tool}.json"), "--json"])
    assert as_json.exit_code == 0
    result = json.loads(as_json.output)
    assert result["tool"] == tool
    assert text.output.strip() and not text.output.lstrip().startswith("{")


def test_explain_names_the_missing_field_and_refuses_bad_json(tmp_path: Path) -> None:
    doc = json.loads((EXAMPLES / "funding.json").read_text())
    doc.pop("market", None)
    first = next(iter(doc))
    doc.pop(first)
    bad = tmp_path / "funding.json"
    bad.write_text(json.dumps(doc))
    out = CliRunner().invoke(main, ["funding", "explain", str(bad)])
    assert out.exit_code != 0 and str(bad) in out.output and first in out.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    out = CliRunner().invoke(main, ["oracle", "explain", str(broken)])
    assert out.exit_code != 0 and "not valid JSON" in out.output
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    out = CliRunner().invoke(main, ["mark", "explain", str(listed)])
    assert out.exit_code != 0 and "want a JSON object" in out.output


def test_bench_oracle_reports_its_figures_small() -> None:
    out = CliRunner().invoke(main, ["bench", "oracle", "--json", "--accounts", "200", "--samples", "3"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["bench"] == "oracle" and report["margins_recomputed_median"] == 200
    assert 0 <= report["margin_events_median"] <= 200
    assert report["update_to_mark_p99_us"] > 0 and "update_to_margin_p99_ms" in report


def test_bench_all_knows_the_oracle_bench_and_its_headline_figures() -> None:
    from perf.bench_all import BENCHES

    (oracle,) = [b for b in BENCHES if b.name == "oracle"]
    assert oracle.command == ("bench", "oracle", "--json") and "--quick" in oracle.quick
    out = CliRunner().invoke(
        main, ["bench", "oracle", "--json", "--quick", "--accounts", "100", "--samples", "2"]
    )
    report = json.loads(out.output)
    assert (report["accounts"], report["samples"]) == (100, 2)
    assert all(key in report for key, _better in oracle.headline)
