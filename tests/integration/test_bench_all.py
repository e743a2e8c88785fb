"""`eldercare bench all --quick` end to end (not timed: it checks the run produces its files):
every part runs, the chart is a PNG, docs/benchmarks.md's generated section holds a row for every
part with figures from this run, and the hand-written sections are kept. Runs on a copy of the
document in a temporary folder, so the repository's docs are left as they are."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from bench.all import BEGIN, CHART, END, PARTS
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
LABELS = {"backbone": "backbone", "registry_import": "registry", "registry_api": "registry", "orders": "orders",
          "alerts": "alerts", "reporting": "reporting", "pg_recovery": "PostgreSQL", "city": "platform"}


def test_bench_all_quick_runs_every_part_and_writes_the_table_and_the_chart(tmp_path, database_url):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "docs" / "benchmarks.md", docs / "benchmarks.md")
    before = (docs / "benchmarks.md").read_text(encoding="utf-8")
    hand_written = before.split(BEGIN)[0] + (before.split(END)[1] if END in before else "")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    env["DATABASE_URL"] = database_url  # the suite's server; bench_infrastructure makes its own databases
    run = subprocess.run([sys.executable, "-m", "eldercare.cli", "bench", "all", "--quick", "--docs", str(docs)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert (docs / CHART).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (docs / "benchmarks.md").read_text(encoding="utf-8")
    section = text.split(BEGIN)[1].split(END)[0]
    assert text.count(BEGIN) == 1 and "`eldercare bench all --quick`" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| part")
            and not line.startswith("| ---")]
    for part in PARTS:
        assert any(row.startswith(f"| {LABELS[part]} |") for row in rows), (part, section)
    for row in rows:  # every row has a figure measured in this run
        figure = row.split(" | ")[2]
        assert any(ch.isdigit() for ch in figure), row
    assert f"]({CHART})" in section
    # the hand-written prose is all still there
    for paragraph in [p for p in hand_written.split("\n\n") if p.strip()]:
        assert paragraph.strip() in text
