"""Drawing a fidelity study's architectures with a fake measurer (throughput from the widths):
the band filter, resuming the same sequence, a band too narrow to fill, the stored centre."""

import pytest

from effvit_nas.errors import UserError
from effvit_nas.fidelity.run import draw_architectures, open_store
from effvit_nas.fidelity.settings import Band, FidelitySettings
from effvit_nas.measure.settings import Measurement


class FakeMeasurer:
    def __init__(self):
        self.calls = []

    def __call__(self, config):
        self.calls.append(config)
        return Measurement(config.short_hash(), 10.0 * sum(config.widths), 0, 0, 0, 1, 16, 0.0, {}, {}, config.to_dict())


def _settings(archs, band):
    return FidelitySettings(space="tiny", archs=archs, band=Band.parse(band) if band else None)


def test_band_keeps_only_what_lies_inside_and_a_resume_continues_the_sequence(tmp_path):
    url = f"sqlite:///{tmp_path}/d.db"
    store, measure, seen = open_store(_settings(3, "2k±30%"), url, "d"), FakeMeasurer(), []
    archs = draw_architectures(_settings(3, "2k±30%"), store, measure, lambda kept, drawn: seen.append((kept, drawn)))
    assert len(archs) == 3 and all(1400 <= a["throughput"] <= 2600 for a in archs)
    assert len(measure.calls) > 3 and seen[-1] == (3, len(measure.calls))  # some draws fell outside

    more = draw_architectures(_settings(5, "2k±30%"), open_store(_settings(5, "2k±30%"), url, "d"), FakeMeasurer())
    assert more[:3] == archs and len(more) == 5 and len({a["hash"] for a in more}) == 5
    again = FakeMeasurer()
    assert draw_architectures(_settings(5, "2k±30%"), open_store(_settings(5, "2k±30%"), url, "d"), again) == more
    assert again.calls == []  # everything stored: nothing measured


def test_a_band_nothing_falls_in_is_one_error(tmp_path):
    s = _settings(3, "99k±1%")
    with pytest.raises(UserError, match="widen --band"):
        draw_architectures(s, open_store(s, f"sqlite:///{tmp_path}/n.db", "n"), FakeMeasurer())


def test_a_relative_band_measures_its_preset_once(tmp_path):
    url, s = f"sqlite:///{tmp_path}/r.db", _settings(3, "M0±50%")
    measure = FakeMeasurer()
    draw_architectures(s, open_store(s, url, "r"), measure)
    assert measure.calls[0].widths == (64, 128, 192) and measure.calls[0].img_size == 64  # M0 at the space's 64 px
    store = open_store(_settings(4, "M0±50%"), url, "r")
    assert store.band()["images_per_s"] == 3840.0
    later = FakeMeasurer()
    draw_architectures(_settings(4, "M0±50%"), store, later)
    assert all(c.widths != (64, 128, 192) for c in later.calls)  # the stored centre is reused
