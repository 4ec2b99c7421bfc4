"""`search --target DEVICE[/BACKEND]:BUDGET`: parsed into frozen targets, each budget's unit
saying its metric; anything else is one SettingError naming the target."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effvit_nas.errors import SettingError
from effvit_nas.measure.backends import NAMES
from effvit_nas.search.targets import Target, parse_target, parse_targets

devices = st.one_of(st.sampled_from(["cpu", "cuda", "auto", "a100", "h100", "v100"]), st.integers(0, 15).map(lambda i: f"cuda:{i}"))
numbers = st.decimals(min_value="0.1", max_value="100000", places=1).map(lambda d: f"{d:f}")
factors = st.decimals(min_value="0.1", max_value="1000", places=1).map(lambda d: f"{d:f}")  # search.budget.MAX_FACTOR
budgets = st.one_of(
    numbers.map(lambda n: f"{n}ms"),
    numbers.map(lambda n: f"{n}-imgs/s"),
    numbers.map(lambda n: f"{n}k"),
    st.tuples(factors, st.sampled_from(["M0", "M1", "M2", "M3", "M4", "M5"])).map(lambda t: f"{t[0]}x{t[1]}"),
)


@given(devices, st.sampled_from(NAMES), budgets, st.sampled_from([None, "throughput", "latency"]))
def test_a_target_parses_back_to_itself(device, backend, budget, metric):
    try:
        t = parse_target(f"{device}/{backend}:{budget}", metric)
    except SettingError as e:  # only a metric that contradicts the budget's unit is refused
        assert metric is not None and "its unit says so" in str(e)
        return
    assert t == Target(device, backend, budget, t.metric)
    unit = "latency" if budget.endswith("ms") else (metric or "throughput") if "x" in budget else "throughput"
    assert t.metric == unit
    assert parse_target(t.spec(), t.metric) == t


@given(st.text(max_size=30))
def test_any_text_is_a_target_or_one_setting_error(text):
    try:
        t = parse_target(text)
    except SettingError as e:
        assert e.setting == "Target"
        return
    assert t.backend in NAMES and t.metric in ("throughput", "latency")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("cpu/trace:2xM0", Target("cpu", "trace", "2xM0", "throughput")),
        ("cpu/openvino:4ms", Target("cpu", "openvino", "4ms", "latency")),
        ("cpu:10k-imgs/s", Target("cpu", "trace", "10k-imgs/s", "throughput")),
        ("cuda:1/tensorrt:2.5 ms", Target("cuda:1", "tensorrt", "2.5ms", "latency")),
        ("A100/OpenVINO:1.5x M0", Target("a100", "openvino", "1.5xM0", "throughput")),
    ],
)
def test_examples(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text, needle",
    [
        ("cpu", "is not DEVICE[/BACKEND]:BUDGET"),
        (":4ms", "is not DEVICE[/BACKEND]:BUDGET"),
        ("cpu/tvm:4ms", "backend 'tvm' is unknown"),
        ("toaster/trace:4ms", "unknown device"),
        ("cpu/trace:fast", "is not a budget"),
    ],
)
def test_bad_targets(text, needle):
    with pytest.raises(SettingError, match=needle.replace("[", r"\[").replace("]", r"\]")) as e:
        parse_target(text)
    assert e.value.setting == "Target"


def test_relative_budgets_take_the_metric_and_duplicates_are_refused():
    assert parse_target("cpu/trace:2xM0", "latency").metric == "latency"
    assert len(parse_targets(["cpu/trace:2xM0", "cpu/openvino:4ms", "cpu/trace:5ms"])) == 3  # trace twice, two metrics
    with pytest.raises(SettingError, match="give one budget"):
        parse_targets(["cpu/trace:2xM0", "cpu/trace:10k"])
