"""Budgets relative to a preset: parsed, resolved once by measuring the preset at the space's
resolution, stored with the study and reused on resume."""

import pytest

from effvit_nas.errors import SettingError
from effvit_nas.search.budget import Budget, default_study_name, parse_relative, resolve_budget
from tests.support import fake_measurement


@pytest.mark.parametrize("text, parsed", [("M0", (1.0, "M0")), ("1.5xM0", (1.5, "M0")), ("0.8x M2", (0.8, "M2")), ("2*m5", (2.0, "M5"))])
def test_relative_forms(text, parsed):
    assert parse_relative(text) == parsed


@pytest.mark.parametrize("text", ["10k-imgs/s", "2.5k", "300"])
def test_absolute_forms_are_not_relative(text):
    assert parse_relative(text) is None


@pytest.mark.parametrize("text, needle", [("M9", "names no preset"), ("0xM0", "factor must be positive"), ("1.5xM", "not a budget")])
def test_bad_budgets_name_the_setting(text, needle):
    with pytest.raises(SettingError, match=needle) as e:
        resolve_budget(text, 64, 10, lambda c: pytest.fail("must not measure"))
    assert e.value.setting == "SearchProblem.budget"


def test_a_relative_budget_measures_the_preset_at_the_spaces_size_once():
    seen = []

    def measure(config):
        seen.append(config)
        return fake_measurement(config, 1200.0)

    b = resolve_budget("1.5xM0", 64, 10, measure)
    assert b == Budget(1800.0, "1.5xM0", 1200.0)
    assert len(seen) == 1 and seen[0].img_size == 64 and seen[0].num_classes == 10 and seen[0].widths == (64, 128, 192)
    again = resolve_budget("1.5 x M0", 64, 10, lambda c: pytest.fail("a stored budget is never re-measured"), stored=b)
    assert again == b
    assert resolve_budget("2.5k", 64, 10, lambda c: pytest.fail("absolute")) == Budget(2500.0)
    assert default_study_name("CPU", "1.5xM0") == "effvit-cpu-1.5xM0" and default_study_name("cpu", "2.5k") == "effvit-cpu-2500"


def test_an_absolute_budget_with_an_anchor_measures_the_anchor_once():
    seen = []

    def measure(config):
        seen.append(config)
        return fake_measurement(config, 812.5)

    b = resolve_budget("2k", 64, 10, measure, anchor="M1")
    assert b == Budget(2000.0, None, 812.5, "M1") and len(seen) == 1 and seen[0].img_size == 64
    # resumed: the stored anchor figure, also when the budget asked now differs (the study refuses that)
    never = lambda c: pytest.fail("a stored anchor is never re-measured")  # noqa: E731
    assert resolve_budget("3k", 64, 10, never, stored=b, anchor="M1") == Budget(3000.0, None, 812.5, "M1")
    with pytest.raises(SettingError, match="names no preset") as e:
        resolve_budget("2k", 64, 10, never, anchor="M9")
    assert e.value.setting == "SearchProblem.anchor"
    with pytest.raises(SettingError, match="is for an absolute budget"):
        resolve_budget("M0", 64, 10, never, anchor="M0")


def test_resuming_a_study_takes_its_stored_relative_budget(tmp_path):
    from effvit_nas.arch.space import load_space
    from effvit_nas.measure.settings import BenchSettings
    from effvit_nas.search.budget import study_budget
    from effvit_nas.search.loop import run_search
    from effvit_nas.search.options import RunOptions
    from effvit_nas.search.problem import SearchProblem
    from tests.support import by_width, fake_proxies

    options = RunOptions(study="rel", storage=f"sqlite:///{tmp_path}/r.db", trials=1, sampler="random")
    problem = SearchProblem(device="cpu", budget=600.0, space="tiny", proxy="params", budget_spec="0.5xM0", budget_reference=1200.0)
    run_search(problem, options, measure=by_width, run_proxies=fake_proxies)
    # the stored figure (600 = 0.5 x 1200 from the fake run), not a new measurement of M0
    resumed = study_budget("0.5 x M0", load_space("tiny"), "cpu", BenchSettings(batch=16), options)
    assert resumed == Budget(600.0, "0.5xM0", 1200.0)
    new = RunOptions(study="other", storage=options.storage, trials=1)
    assert study_budget("2.5k", load_space("tiny"), "cpu", BenchSettings(batch=16), new) == Budget(2500.0)


def test_a_driver_that_measured_while_another_created_the_study_takes_the_stored_figure(tmp_path):
    """Drivers of one command started together each measure M0 before the study exists; the
    one that measured while another created the study takes that study's figure (it would be
    refused for a figure a few img/s apart); another relative budget, or an absolute one, is
    its own."""
    from effvit_nas.search.budget import adopt_stored
    from effvit_nas.search.options import RunOptions
    from effvit_nas.search.problem import SearchProblem
    from effvit_nas.search.study import open_study

    options = RunOptions(study="rel", storage=f"sqlite:///{tmp_path}/r.db", trials=1, sampler="random")
    open_study(SearchProblem(device="cpu", budget=600.0, space="tiny", budget_spec="0.5xM0", budget_reference=1200.0), options)
    assert adopt_stored(Budget(590.0, "0.5xM0", 1180.0), options) == Budget(600.0, "0.5xM0", 1200.0)
    assert adopt_stored(Budget(1180.0, "1xM0", 1180.0), options) == Budget(1180.0, "1xM0", 1180.0)
    assert adopt_stored(Budget(600.0), options) == Budget(600.0)


@pytest.mark.parametrize(
    "text, metric, expected",
    [
        ("5ms", None, "latency"),
        ("0.5 ms", "latency", "latency"),
        ("800us", None, "latency"),
        ("10k-imgs/s", None, "throughput"),
        ("2.5k", "throughput", "throughput"),
        ("1.5xM0", None, "throughput"),
        ("1.5xM0", "latency", "latency"),
    ],
)
def test_a_budgets_unit_says_its_metric(text, metric, expected):
    from effvit_nas.search.budget import budget_metric

    assert budget_metric(text, metric) == expected


@pytest.mark.parametrize("text, metric", [("5ms", "throughput"), ("10k-imgs/s", "latency")])
def test_a_metric_contradicting_the_unit_is_refused(text, metric):
    from effvit_nas.search.budget import budget_metric

    with pytest.raises(SettingError, match="its unit says so") as e:
        budget_metric(text, metric)
    assert e.value.setting == "BenchSettings.metric"


def test_latency_budgets_keep_the_direction():
    """A latency budget is held as images/s at batch 1 (1000 / ms), and a relative one means
    "as fast as": 1.5xM0 allows M0's latency / 1.5."""
    b = resolve_budget("5ms", 64, 10, lambda c: pytest.fail("absolute"))
    assert b.images_per_s == pytest.approx(200.0) and b.latency_ms == pytest.approx(5.0)
    m0_latency_ms = 2.0  # M0's figure: 1 / p50 = 500 images/s at batch 1
    rel = resolve_budget("1.5xM0", 64, 10, lambda c: fake_measurement(c, 1e3 / m0_latency_ms))
    assert rel.latency_ms == pytest.approx(m0_latency_ms / 1.5)
    # feasible = figure >= images_per_s: a faster model (lower latency) passes, a slower one fails
    assert b.images_per_s <= 1e3 / 4.0 and not b.images_per_s <= 1e3 / 6.0
    assert default_study_name("cpu", "5ms") == "effvit-cpu-5ms"
    assert default_study_name("cpu", "1.5xM0", "latency") == "effvit-cpu-1.5xM0-latency"
