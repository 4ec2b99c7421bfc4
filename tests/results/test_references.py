"""Where a study's preset reference points sit: the preset its budget or anchor rests on at the
figure the study resolved (not the store's newest run)."""

import pytest

from effvit_nas.arch.space import load_space

# _budget_preset_throughput is private: the public reference points would measure the presets
from effvit_nas.results.references import _budget_preset_throughput, preset_configs
from effvit_nas.results.studies import StudyInfo


@pytest.mark.parametrize(
    "spec, anchor, preset",
    [("1.5xM0", None, "M0"), (None, "M1", "M1"), (None, None, None)],
)
def test_the_budgets_preset_or_the_anchor_sits_at_the_studys_figure(spec, anchor, preset):
    configs = preset_configs(load_space("tiny"))
    info = StudyInfo(
        name="s", device="cpu", budget=2000.0, space="tiny", proxy="macs", data={}, train={}, bench={}, created=None,
        budget_spec=spec, budget_reference=812.5 if spec or anchor else None, anchor=anchor,
    )  # fmt: skip
    expected = {c.short_hash(): 812.5 for n, c in configs.items() if n.split("@")[0] == preset}
    assert _budget_preset_throughput(info, configs) == expected and (preset is None) == (not expected)
