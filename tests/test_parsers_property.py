"""Property-based tests (Hypothesis) of the parsers users type into (issue 45): any input gives
a valid object or the project's UserError, which the CLI prints as one ``error:`` line with
exit status 2; never another exception."""

import math

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from effvit_nas.arch.config import ArchConfig, estimate_cost, load_config
from effvit_nas.arch.space import SearchSpace
from effvit_nas.errors import UserError
from effvit_nas.measure.devices import parse_device
from effvit_nas.measure.store import is_in_memory, open_engine, require_persistent
from effvit_nas.search.budget import parse_relative
from effvit_nas.search.options import parse_duration
from effvit_nas.search.problem import parse_budget
from tests.support import run_main

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# numbers around every edge the validation has: signs, zero, odd/even, the paper's values,
# the bounds and far past them, non-integral and non-finite floats
NUMBERS = st.one_of(
    st.sampled_from([-1, 0, 1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 128, 4096, 4097, 100_000, 2**63, 2**70]),
    st.sampled_from([0.5, 1.0, 2.0, 2.5, 16.0, 17.0, -1.0, math.inf, -math.inf, math.nan, 1e300]),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
)
SCALARS = st.one_of(NUMBERS, st.none(), st.text(max_size=8))
VALUES = st.one_of(SCALARS, st.lists(NUMBERS, max_size=5), st.lists(st.lists(NUMBERS, max_size=4), max_size=4))
CONFIG_KEYS = st.sampled_from(
    ["widths", "depths", "heads", "qk_dims", "v_ratios", "ffn_ratios", "kernels", "windows", "img_size", "num_classes", "bogus"]
)
SPACE_KEYS = st.sampled_from(
    [
        "name",
        "stages",
        "heads",
        "head_dims",
        "depths",
        "qk_dims",
        "v_ratios",
        "ffn_ratios",
        "windows",
        "kernels",
        "img_sizes",
        "num_classes",
    ]
)


def _valid_or_user_error(make):
    try:
        return make()
    except UserError:
        return None


@FAST
@given(st.dictionaries(CONFIG_KEYS, VALUES, max_size=10) | st.one_of(SCALARS, st.lists(SCALARS)))
def test_config_mappings_give_a_config_or_a_config_error(data):
    config = _valid_or_user_error(lambda: ArchConfig.from_dict(data))
    if config is not None:  # a valid config is within the bounds, and round-trips
        params, macs = estimate_cost(config)
        assert params > 0 and macs > 0
        assert ArchConfig.from_dict(config.to_dict()) == config


@FAST
@given(st.text(max_size=200))
def test_config_files_of_any_text_give_a_config_or_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text)
    _valid_or_user_error(lambda: load_config(path))


@FAST
@given(st.dictionaries(SPACE_KEYS, VALUES, max_size=12))
@example({"stages": 2**63})  # found by Hypothesis: the per-stage choices were repeated before the bound was checked
def test_space_mappings_give_a_space_or_a_config_error(data):
    data = {"heads": [2, 4], "head_dims": [16, 32], "depths": [1, 2], **data}
    space = _valid_or_user_error(lambda: SearchSpace.from_dict(data))
    if space is not None:
        assert space.size() >= 1 and SearchSpace.from_dict(space.to_dict()) == space


BUDGET_TEXT = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\s*[0-9]{1,400}(\.[0-9]{1,5})?\s*[kKmM]?\s*(-?imgs?/s)?\s*", fullmatch=True),
    st.from_regex(r"[0-9]{0,400}(\.[0-9]{1,3})?\s*[xX*]\s*[mM][0-9]", fullmatch=True),
)


@FAST
@given(BUDGET_TEXT)
def test_budgets_give_a_finite_positive_figure_or_a_setting_error(text):
    def parse():
        relative = parse_relative(text)
        return relative[0] if relative else parse_budget(text)

    value = _valid_or_user_error(parse)
    assert value is None or (math.isfinite(value) and value > 0)


@FAST
@given(st.one_of(st.text(max_size=20), st.from_regex(r"\s*[0-9]{1,400}(\.[0-9]{1,3})?\s*[smh]?\s*", fullmatch=True)))
def test_durations_give_finite_positive_seconds_or_a_setting_error(text):
    seconds = _valid_or_user_error(lambda: parse_duration(text))
    assert seconds is None or (math.isfinite(seconds) and seconds > 0)


@FAST
@given(st.one_of(st.text(max_size=20), st.from_regex(r"(cuda|CUDA|cpu|auto)(:[0-9]{1,30})?|[a-z]{1,4}[0-9]{1,4}", fullmatch=True)))
def test_devices_give_a_spec_or_a_device_error(text):
    spec = _valid_or_user_error(lambda: parse_device(text))
    assert spec is None or spec.kind in ("cpu", "cuda", "auto")


# no network: schemes that need no server, a driver that is not installed, or none at all
STORAGE = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda scheme, rest: f"{scheme}://{rest}",
        st.sampled_from(["sqlite", "sqlite+pysqlite", "nosuchdb", "mysql", "", "sqlite:"]),
        st.text(alphabet="/:?=&.abcx_-", max_size=20),
    ),
)


@FAST
@given(STORAGE)
def test_storage_urls_open_or_give_a_storage_error(tmp_path_factory, monkeypatch, url):
    monkeypatch.chdir(tmp_path_factory.mktemp("db"))  # relative SQLite paths land here
    persistent = _valid_or_user_error(lambda: require_persistent(url) or True)
    assert persistent is None or not is_in_memory(url)
    _valid_or_user_error(lambda: open_engine(url, existing=True))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(CONFIG_KEYS, VALUES, min_size=1, max_size=10))
def test_model_info_on_any_config_file_is_a_result_or_one_error_line(tmp_path_factory, capsys, data):
    path = tmp_path_factory.mktemp("cli") / "c.yaml"
    path.write_text(yaml.safe_dump(data, default_flow_style=None) if not _has_nan(data) else "widths: [.nan]")
    r = run_main(capsys, "model", "info", str(path), "--json")
    assert r.returncode in (0, 2)
    if r.returncode == 2:
        assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.stderr


def _has_nan(value) -> bool:
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize("text", ["9" * 400, "9" * 400 + "h"])
def test_overflowing_durations_are_refused(text):
    with pytest.raises(UserError, match="more than a year"):
        parse_duration(text)
