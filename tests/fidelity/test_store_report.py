"""Storage, resumption and the report on a real SQLite study, without Ray: results are put
in the store as run_jobs would, and the report must read them back correctly."""

import pytest

from effvit_nas.errors import UserError
from effvit_nas.fidelity.report import build_report
from effvit_nas.fidelity.run import open_store, pending_jobs
from effvit_nas.fidelity.settings import FidelitySettings, ProxySpec
from effvit_nas.fidelity.store import Result

SETTINGS = FidelitySettings(archs=6, seeds=2, proxies=(ProxySpec("params"), ProxySpec("train", 20)))
ARCHS = [{"hash": f"a{i}", "config": {}, "throughput": 100.0 + i} for i in range(6)]


@pytest.fixture
def store(tmp_path):
    s = open_store(SETTINGS, f"sqlite:///{tmp_path}/f.db", "fid")
    s.set_archs(ARCHS)
    return s


def test_jobs_cheapest_first_and_stored_ones_skipped(store):
    jobs, stored = pending_jobs(SETTINGS, store, ARCHS)
    assert stored == 0 and len(jobs) == 6 * 4
    assert [j.key for j in jobs[:7]] == ["params"] * 6 + ["train@20"]
    assert [j.key for j in jobs[-12:]] == ["0"] * 6 + ["1"] * 6  # one whole seed, then the next
    store.put("reference", "a0", "0", Result(0.5, 1.0, {}))
    jobs, stored = pending_jobs(SETTINGS, store, ARCHS)
    assert stored == 1 and all((j.kind, j.config_hash, j.key) != ("reference", "a0", "0") for j in jobs)


def test_results_survive_reopening_and_other_settings_are_refused(store, tmp_path):
    store.put("proxy", "a1", "params", Result(3.0, 0.1, {"x": 1}))
    again = open_store(SETTINGS, store.storage, "fid")
    assert again.get("proxy", "a1", "params") == Result(3.0, 0.1, {"x": 1}) and again.archs() == ARCHS
    with pytest.raises(UserError, match="reference differ"):
        open_store(FidelitySettings(archs=6, reference_epochs=9), store.storage, "fid")


def _fill(store, proxy_of, ref_of):
    for i, a in enumerate(ARCHS):
        store.put("proxy", a["hash"], "params", Result(proxy_of(i), 0.01, {}))
        for seed in (0, 1):
            store.put("reference", a["hash"], str(seed), Result(ref_of(i, seed), 2.0, {}))


def test_report_ranks_against_the_mean_of_the_seeds(store):
    # seed 1 reverses the order of seed 0 but by less, so the mean follows seed 0
    _fill(store, proxy_of=lambda i: float(i), ref_of=lambda i, s: 0.5 + (0.1 * i if s == 0 else -0.05 * i))
    report = build_report(SETTINGS, store, ARCHS, resamples=200)
    row = {r.proxy: r for r in report.rows}
    assert report.complete == 6
    assert row["params"].agreement.kendall == pytest.approx(1.0)
    assert row["train@20"].agreement is None  # never evaluated: no number, not a zero
    assert report.ceiling.kendall == pytest.approx(-1.0)
    assert report.per_arch[2]["reference"] == [pytest.approx(0.7), pytest.approx(0.4)]


def test_architectures_missing_a_seed_are_left_out(store):
    _fill(store, proxy_of=lambda i: float(i), ref_of=lambda i, s: float(i))
    other = open_store(SETTINGS, store.storage, "fid")
    assert build_report(SETTINGS, other, ARCHS, resamples=50).complete == 6
    more_seeds = FidelitySettings(archs=6, seeds=3, proxies=SETTINGS.proxies)
    assert build_report(more_seeds, other, ARCHS, resamples=50).complete == 0


def test_a_search_study_is_not_taken_over(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="search", storage=url, directions=["maximize", "maximize"])
    study.add_trial(optuna.trial.create_trial(values=[0.5, 10.0]))
    with pytest.raises(UserError, match="not a fidelity study"):
        open_store(SETTINGS, url, "search")
