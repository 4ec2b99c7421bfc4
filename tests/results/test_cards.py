"""Model cards: each writer replaces only its own sections."""

from effvit_nas.results.cards import set_section, write_card

EXPORTED = "# Model abc\n\n| params | 1 M |\n\n## Use\n\n```\neffvit-nas train .\n```\n"


def test_a_section_is_replaced_in_place_and_the_rest_kept(tmp_path):
    card = tmp_path / "README.md"
    card.write_text(EXPORTED)
    set_section(card, "## Trained", "top-1 90.0 %")
    set_section(card, "## Compared with the baseline", "| a | b |")
    set_section(card, "## Trained", "top-1 91.0 %")  # retrained: replaced where it was, not appended again
    text = card.read_text()
    assert text.count("## Trained") == 1 and "90.0" not in text
    assert text.index("## Use") < text.index("## Trained\n\ntop-1 91.0 %") < text.index("## Compared with the baseline")
    assert text.startswith(EXPORTED.rstrip("\n"))


def test_exporting_again_keeps_the_sections_later_steps_added(tmp_path):
    card = tmp_path / "README.md"
    card.write_text(EXPORTED)
    set_section(card, "## Trained", "top-1 91.0 %")
    write_card(card, EXPORTED.replace("1 M", "2 M"))  # the export's own part is rewritten
    text = card.read_text()
    assert "| params | 2 M |" in text and "1 M" not in text
    assert text.endswith("## Trained\n\ntop-1 91.0 %\n") and text.count("## Use") == 1


def test_a_comparison_creates_the_card_when_there_is_none(tmp_path):
    card = tmp_path / "README.md"
    set_section(card, "## Compared with the baseline", "| a | b |")
    assert card.read_text() == "## Compared with the baseline\n\n| a | b |\n"


def test_a_heading_inside_a_code_fence_is_code(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# Model\n\n## Use\n\n```markdown\n## Trained\n```\n")
    set_section(card, "## Trained", "top-1 91.0 %")
    assert card.read_text() == "# Model\n\n## Use\n\n```markdown\n## Trained\n```\n\n## Trained\n\ntop-1 91.0 %\n"
