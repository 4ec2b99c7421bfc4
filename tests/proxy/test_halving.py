import pytest

from effvit_nas.data import DataConfig, load_data
from effvit_nas.errors import SettingError
from effvit_nas.proxy.halving import Halving, pareto_ranks, promoted, replay, reporter
from effvit_nas.proxy.short_training import ShortTrainSettings, train_proxy
from tests.support import TINY


def test_rungs():
    assert Halving().rung_steps(200) == (22, 66)
    assert Halving(eta=2, rungs=3).rung_steps(8) == (1, 2, 4)
    assert Halving().rung_steps(5) == (1,) and Halving().rung_steps(2) == ()  # too short to judge anywhere
    with pytest.raises(SettingError):
        Halving(eta=1)


def test_pareto_ranks():
    pts = [(0.9, 100.0), (0.5, 300.0), (0.5, 100.0), (0.4, 50.0), (0.9, 100.0)]
    assert pareto_ranks(pts) == [1, 1, 2, 3, 1]  # equal points do not dominate each other


def test_promotion_by_pareto_rank():
    earlier = [(0.5, 100.0), (0.6, 100.0), (0.7, 100.0)]
    assert promoted((0.1, 1.0), earlier[:2], eta=3)  # fewer than eta to compare with: go on
    assert not promoted((0.55, 100.0), earlier, eta=3)  # 2 of 4 rank better, the best third is 2
    assert promoted((0.8, 100.0), earlier, eta=3)
    assert promoted((0.1, 1000.0), earlier, eta=3)  # worst top-1 but fastest: on the front


def test_reporter_judges_only_rungs_and_records_them():
    reached = {}
    report = reporter(Halving(), 90, 100.0, {10: [(0.5, 100.0), (0.6, 100.0), (0.7, 100.0)]}, reached)
    assert report(5, 0.0) is False and reached == {}
    assert report(10, 0.2) is True and reached == {10: 0.2}


def test_replay_costs_and_orders():
    full = lambda acc: ({22: acc / 3, 66: acc / 2}, acc, 100.0)  # noqa: E731
    out = replay([full(0.9), full(0.8), full(0.7), full(0.1), full(0.95)], Halving(), 200)
    assert [x.steps for x in out] == [200, 200, 200, 22, 200]
    assert out[3].score < min(x.score for i, x in enumerate(out) if i != 3)
    assert out[4].score > out[0].score


def test_short_training_stops_at_a_rung_and_says_so():
    data = load_data(DataConfig(img_size=32, num_classes=4, train_per_class=8, val_per_class=4))
    settings = ShortTrainSettings(steps=9, batch=8, eval_at=(1, 3))
    stop_at_3 = lambda step, acc: step == 3  # noqa: E731
    r = train_proxy(TINY, data, settings, stop_at_3)
    assert (r.steps, r.stopped_early) == (3, True) and [s for s, _ in r.history] == [1, 3]
    assert r.eval_seconds > 0
