"""benchmarks/_report.py: runs of one question share a report as keyed sections."""

import json

from benchmarks._report import merge, write_report, write_section


def test_a_section_is_replaced_in_its_place_and_the_others_are_kept(tmp_path):
    md = tmp_path / "r.md"
    write_section(md, "onnxruntime", "Title", "# ORT run\n\n| a |\n", {"cv": 1.0})
    write_section(md, "openvino", "Other title", "# OV run\n", {"cv": 2.0})
    write_section(md, "onnxruntime", "Title", "# ORT again\n", {"cv": 3.0})
    record = json.loads(md.with_suffix(".json").read_text())
    assert record["title"] == "Title"  # the report's first title stays
    assert list(record["sections"]) == ["onnxruntime", "openvino"]
    assert record["sections"]["onnxruntime"]["record"] == {"cv": 3.0}
    assert md.read_text() == "# Title\n\n## ORT again\n\n## OV run\n"


def test_merge_makes_old_reports_sections_unchanged(tmp_path):
    write_report(tmp_path / "old_a.md", "# A\n\ntext a\n", {"x": 1})
    write_report(tmp_path / "old_b.md", "# B\n\n## detail\n", [1, 2])
    merge(tmp_path / "new", "Both", [f"a={tmp_path / 'old_a'}", f"b={tmp_path / 'old_b'}"])
    record = json.loads((tmp_path / "new.json").read_text())
    assert {k: s["record"] for k, s in record["sections"].items()} == {"a": {"x": 1}, "b": [1, 2]}
    assert (tmp_path / "new.md").read_text() == "# Both\n\n## A\n\ntext a\n\n## B\n\n### detail\n"


def test_a_report_without_sections_is_refused_not_overwritten(tmp_path):
    import pytest

    write_report(tmp_path / "plain.md", "# Plain\n", {"entries": {"a": 1}})
    with pytest.raises(SystemExit, match="without sections"):
        write_section(tmp_path / "plain.md", "new", "Title", "# New\n", {})
    assert json.loads((tmp_path / "plain.json").read_text()) == {"entries": {"a": 1}}
    assert (tmp_path / "plain.md").read_text() == "# Plain\n"


def test_only_headings_are_demoted(tmp_path):
    write_section(tmp_path / "r.md", "k", "T", "# Head\n#not-a-heading\n", {})
    assert (tmp_path / "r.md").read_text() == "# T\n\n## Head\n#not-a-heading\n"
