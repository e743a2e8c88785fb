"""`eldercare bench all`'s writing of docs/benchmarks.md: only the generated section changes."""

from __future__ import annotations

from bench.all import BEGIN, END, write_section


def test_the_generated_section_goes_before_the_first_section_and_is_replaced_not_repeated(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nIntro prose.\n\n## Registry import\n\nHand-written.\n", encoding="utf-8")
    write_section(doc, f"{BEGIN}\nfirst\n{END}")
    text = doc.read_text(encoding="utf-8")
    assert text.index("Intro prose.") < text.index("first") < text.index("## Registry import")
    write_section(doc, f"{BEGIN}\nsecond\n{END}")
    text = doc.read_text(encoding="utf-8")
    assert "first" not in text and text.count(BEGIN) == 1 and text.count(END) == 1
    assert "Intro prose." in text and "## Registry import\n\nHand-written.\n" in text
