import json

import pytest

from effvit_nas.arch.config import PRESETS, ArchConfig, load_config, preset, preset_name
from effvit_nas.errors import ConfigError

M0 = dict(widths=[64, 128, 192], depths=[1, 2, 3], heads=[4, 4, 4])


def test_presets_match_the_paper_table():
    assert PRESETS["M3"].widths == (128, 240, 320)
    assert PRESETS["M5"].depths == (1, 3, 4)
    assert PRESETS["M2"].heads == (4, 3, 2)
    assert PRESETS["M1"].kernels == (7, 5, 3, 3)
    for c in PRESETS.values():
        assert c.qk_dims == (16, 16, 16) and c.windows == (7, 7, 7)
        assert c.v_ratios == (1.0, 1.0, 1.0) and c.ffn_ratios == (2.0, 2.0, 2.0)
        assert c.img_size == 224 and c.num_classes == 1000
        # per-head value dim equals the split width in the released models
        assert all(c.v_dim(i) == c.widths[i] // c.heads[i] for i in range(3))


def test_round_trip_and_canonical_types():
    c = ArchConfig.from_dict({**M0, "ffn_ratios": 2, "v_ratios": [1, 1, 1.0]})
    assert c == PRESETS["M0"]
    assert ArchConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.to_dict()["ffn_ratios"] == [2.0, 2.0, 2.0]
    assert isinstance(c.to_dict()["widths"][0], int)


def test_hash_is_stable_and_content_addressed():
    # A literal: ids are stored in databases, so the canonical form must never drift.
    assert PRESETS["M0"].short_hash() == "f45070c844ec"
    assert PRESETS["M0"].short_hash() == ArchConfig.from_dict(M0).short_hash()
    assert PRESETS["M0"].replace(img_size=160).short_hash() != PRESETS["M0"].short_hash()
    assert len({c.short_hash() for c in PRESETS.values()}) == 6


def test_unused_kernels_do_not_change_identity():
    m1 = PRESETS["M1"]  # heads (2, 3, 3): the fourth kernel is never used
    assert m1.replace(kernels=(7, 5, 3)).short_hash() == m1.short_hash()
    assert m1.replace(kernels=(7, 5, 5)).short_hash() != m1.short_hash()
    assert preset_name(m1.replace(kernels=(7, 5, 3), img_size=160)) == "M1"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"widths": [60, 128, 192]}, "widths[0]"),
        ({"widths": [64, 130, 192]}, "widths[1]"),
        ({"heads": [4, 4, 5]}, "heads"),
        ({"depths": [1, 0, 3]}, "depths[1]"),
        ({"qk_dims": [16, -16, 16]}, "qk_dims[1]"),
        ({"kernels": [5, 4, 5, 5]}, "kernels[1]"),
        ({"v_ratios": [1.0, 1.0, 0.01]}, "v_ratios[2]"),
        ({"ffn_ratios": [2.0, 2.01, 2.0]}, "ffn_ratios[1]"),
        ({"windows": [7, 7]}, "windows"),
        ({"img_size": 8}, "img_size"),
        ({"img_size": 4096}, "img_size"),
        ({"num_classes": 0}, "num_classes"),
        ({"depths": [1, 2.5, 3]}, "depths[1]"),
        ({"widths": "wide"}, "widths"),
        ({"kernels": [5, True, 5, 5]}, "kernels[1]"),
    ],
)
def test_validation_names_the_field(change, field):
    with pytest.raises(ConfigError) as e:
        ArchConfig.from_dict({**M0, **change})
    assert str(e.value).startswith(field), str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match="unknown config key 'width'"):
        ArchConfig.from_dict({**M0, "width": 3})
    with pytest.raises(ConfigError, match="missing required key 'heads'"):
        ArchConfig.from_dict({"widths": [64], "depths": [1]})


def test_load_config_files_and_presets(tmp_path):
    assert load_config("m4") == preset("M4") == load_config("efficientvit_m4")
    p = tmp_path / "c.yaml"
    p.write_text(PRESETS["M2"].to_yaml())
    assert load_config(p) == PRESETS["M2"]
    j = tmp_path / "c.json"
    j.write_text(json.dumps(PRESETS["M2"].to_dict()))
    assert load_config(j) == PRESETS["M2"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("widths: [64, 128\n")
    with pytest.raises(ConfigError, match="cannot parse config file"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"unknown preset|neither a preset"):
        load_config("M7")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listing)


def test_resolutions_follow_conv_arithmetic():
    assert PRESETS["M0"].resolutions() == (14, 7, 4)
    assert PRESETS["M0"].replace(img_size=160).resolutions() == (10, 5, 3)
    assert PRESETS["M0"].replace(img_size=100).resolutions() == (7, 4, 2)


def test_an_export_folder_without_config_yaml_or_an_undecodable_file_is_one_line(tmp_path):
    folder, undecodable = tmp_path / "export", tmp_path / "bytes.yaml"
    folder.mkdir()
    undecodable.write_bytes(b"\xff\xfe\x00")  # not UTF-8
    for spec, message in [(folder, "has no config.yaml"), (undecodable, "cannot read config file")]:
        with pytest.raises(ConfigError, match=message) as e:
            load_config(spec)
        assert "\n" not in str(e.value)
