"""Issue 45 item 2: configs and spaces are bounded before anything is allocated."""

import pytest

from effvit_nas.arch.config import MAX_PARAMS, PRESETS, ArchConfig, estimate_cost
from effvit_nas.arch.space import SearchSpace, load_space
from effvit_nas.errors import ConfigError
from effvit_nas.model.cost import model_cost
from tests.support import run_main


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_cost_estimate_agrees_with_the_built_model(name):
    config = PRESETS[name]
    params, macs = estimate_cost(config)
    cost = model_cost(config)
    assert 0.95 <= params / cost.params <= 1.05 and 0.95 <= macs / cost.macs <= 1.05


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"widths": (100000, 128, 192)}, "widths[0]: must be at most 4096"),
        ({"depths": (1, 2, 100000)}, "depths[2]: must be at most 64"),
        ({"qk_dims": 100000}, "qk_dims[0]: must be at most 1024"),
        ({"windows": 10**6}, "windows[0]: must be at most 128"),
        ({"kernels": (5, 5, 5, 1001)}, "kernels[3]: must be at most 31"),
        ({"num_classes": 10**9}, "num_classes: must be at most"),
        ({"ffn_ratios": 1000.0}, "ffn_ratios[0]: must be at most 16"),
        # every knob within its bound, the whole far above what one GPU can train
        ({"widths": (4096, 4096, 4096), "depths": (64, 64, 64), "heads": (4, 4, 4), "ffn_ratios": 16.0}, "parameters"),
    ],
)
def test_out_of_bounds_configs_are_refused(changes, needle):
    with pytest.raises(
        ConfigError,
    ) as e:
        PRESETS["M0"].replace(**changes)
    assert needle in str(e.value)


def test_the_largest_config_within_the_bounds_is_accepted():
    config = ArchConfig(widths=(256, 512, 1024), depths=(4, 8, 8), heads=(4, 8, 8), kernels=(5,) * 8, img_size=512)
    assert estimate_cost(config)[0] < MAX_PARAMS


@pytest.mark.parametrize("widths, depths", [("[100000, 128, 192]", "[1, 2, 3]"), ("[64, 128, 192]", "[1, 2, 100000]")])
def test_model_info_refuses_huge_configs_in_one_line(tmp_path, capsys, widths, depths):
    path = tmp_path / "huge.yaml"
    path.write_text(f"widths: {widths}\ndepths: {depths}\nheads: [4, 4, 4]\n")
    r = run_main(capsys, "model", "info", str(path))
    assert r.returncode == 2 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1 and "must be at most" in r.stderr


def test_space_show_refuses_huge_head_dims(tmp_path, capsys):
    data = load_space("tiny").to_dict() | {"head_dims": [16, 100000]}
    with pytest.raises(ConfigError, match="largest point"):
        SearchSpace.from_dict(data)
    path = tmp_path / "space.yaml"
    path.write_text("heads: [2, 4]\nhead_dims: [16, 100000]\ndepths: [1, 2]\n")
    r = run_main(capsys, "space", "show", "--space", str(path))
    assert r.returncode == 2 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1 and "largest point" in r.stderr


def test_bundled_spaces_stay_within_the_bounds():
    for name in ("efficientvit", "efficientvit64", "tiny"):
        load_space(name)
