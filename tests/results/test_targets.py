"""`show`, `studies`, `pareto` and `export` of a study with several targets (stored as
CONTRACT: values (accuracy, figure per target), a constraint per target, a ``targets`` list in
the problem and on each trial) and of a one-target latency study: every target in its unit."""

import csv
import io
import json
from dataclasses import asdict

import pytest

from effvit_nas.arch.config import ArchConfig
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.trials.records import fmt_ms
from tests.support import FAST_BENCH, run_main

TRACE = BenchSettings(batch=16)
OPENVINO = BenchSettings(batch=1, backend="openvino", metric="latency")
# (accuracy, cpu/trace img/s, cpu/openvino p50 ms, p90 ms); budgets 500 img/s and 4 ms (250/s)
TRIALS = [
    (0.50, 800.0, 2.5, 2.9),  # Pareto
    (0.60, 600.0, 3.2, 3.8),  # Pareto: best proxy
    (0.55, 900.0, 5.0, 5.5),  # over 4 ms: infeasible on openvino
    (0.45, 700.0, 2.0, 2.2),  # Pareto only over both targets: (accuracy, trace) alone, #0 dominates it
    (0.40, 650.0, 2.6, 3.0),  # dominated by #0 on every objective
]


def _config(i: int) -> ArchConfig:
    return ArchConfig(
        widths=(16, 32, 48 + 16 * i), depths=(1, 1, 1), heads=(2, 2, 2), qk_dims=8, kernels=(5, 3), windows=4, img_size=32, num_classes=4
    )


def _identity(device: str, budget: float, bench: BenchSettings) -> dict:
    from effvit_nas.search.problem import SearchProblem

    return SearchProblem(device=device, budget=budget, space="tiny", proxy="train", bench=bench).identity()


def _attrs(i: int, acc: float, first: float) -> dict:
    from effvit_nas.model.cost import count_macs, count_params
    from effvit_nas.model.efficientvit import build_model

    cfg = _config(i)
    model = build_model(cfg)
    return {
        "config": cfg.to_dict(), "config_hash": cfg.short_hash(), "params": count_params(model), "macs": count_macs(model, 32),
        "measured": True, "throughput": first, "throughput_iqr": [0.98 * first, 1.02 * first], "device_id": "cpu-test",
        "accuracy": acc, "proxy": "train",
    }  # fmt: skip


def _study(url: str, name: str, ident: dict, n_values: int):
    import optuna

    study = optuna.create_study(study_name=name, storage=url, directions=["maximize"] * n_values)
    study.set_user_attr("effvit", ident)
    study.set_user_attr("created", 1.8e9)
    return study


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """A 2-target study (cpu/trace >= 500 img/s, cpu/openvino <= 4 ms) and a one-target latency
    study (cpu <= 4 ms at batch 1) in one database."""
    import optuna

    url = f"sqlite:///{tmp_path_factory.mktemp('targets')}/t.db"
    ident = _identity("cpu", 500.0, TRACE)
    ident["targets"] = [
        {"spec": "cpu/trace:500-imgs/s", "device": "cpu", "backend": "trace", "metric": "throughput", "budget": 500.0,
         "budget_spec": None, "budget_reference": None, "bench": asdict(TRACE)},
        {"spec": "cpu/openvino:4ms", "device": "cpu", "backend": "openvino", "metric": "latency", "budget": 250.0,
         "budget_spec": None, "budget_reference": None, "bench": asdict(OPENVINO)},
    ]  # fmt: skip
    two = _study(url, "two", ident, 3)
    latency = _study(url, "lat", _identity("cpu", 250.0, BenchSettings(batch=1, metric="latency")), 2)
    for i, (acc, tp, ms, p90) in enumerate(TRIALS):
        attrs = _attrs(i, acc, tp)
        attrs["targets"] = [
            {"figure": tp, "iqr": attrs["throughput_iqr"], "measured": True, "device_id": "cpu-test", "p90_ms": None, "predicted": None},
            {"figure": 1e3 / ms, "iqr": None, "measured": True, "device_id": "cpu-test", "p90_ms": p90, "predicted": None},
        ]
        cons = {"throughput": (500 - tp) / 500, "cpu/openvino:4ms": (250 - 1e3 / ms) / 250}
        two.add_trial(optuna.trial.create_trial(values=[acc, tp, 1e3 / ms], constraints=cons, user_attrs=attrs))
        one = {**_attrs(i, acc, 1e3 / ms), "throughput_iqr": None}
        latency.add_trial(
            optuna.trial.create_trial(values=[acc, 1e3 / ms], constraints={"throughput": (250 - 1e3 / ms) / 250}, user_attrs=one)
        )
    return url


@pytest.fixture(scope="module")
def measured(studies):
    """A one-target latency study whose two trials were measured here for real (batch 1,
    short timings), their records in the measurement store as a search leaves them: the p90
    is only there. Returns the measurements."""
    import optuna

    from effvit_nas.measure.devices import fingerprint
    from effvit_nas.measure.store import MeasurementStore
    from effvit_nas.measure.timing import measure

    bench = BenchSettings(batch=1, metric="latency", **FAST_BENCH)
    study = _study(studies, "measured", _identity("cpu", 1.0, bench), 2)  # a budget of 1 s: every model feasible
    store, device = MeasurementStore(studies), fingerprint("cpu")
    out = []
    for i, acc in ((0, 0.5), (1, 0.6)):
        m = measure(_config(i), bench, "cpu", device)
        store.put(m, bench.key())
        attrs = {**_attrs(i, acc, m.throughput), "throughput_iqr": [m.q1, m.q3], "device_id": device["id"]}
        study.add_trial(
            optuna.trial.create_trial(values=[acc, m.throughput], constraints={"throughput": (1.0 - m.throughput) / 1.0}, user_attrs=attrs)
        )
        out.append(m)
    return out


def _plain(html: str) -> str:
    """A plotly HTML file's text with the characters its JSON escapes put back."""
    return html.replace("\\u002f", "/").replace("\\u003c", "<").replace("\\u003e", ">")


def _row(stdout: str, number: int) -> list[str]:
    """The cells of trial ``number``'s row in `show`'s table (none of them has a space but the proxy's "%")."""
    return next(line.replace(" %", "%").split() for line in stdout.splitlines() if line.split()[:2] == [str(number), "COMPLETE"])


def test_show_prints_a_column_per_target_in_its_unit(studies, capsys):
    r = run_main(capsys, "show", "--study", "two", "--storage", studies)
    assert r.returncode == 0, r.stderr
    assert "2 targets (cpu/trace >= 500 img/s, cpu/openvino <= 4 ms p50)" in r.stdout
    assert "MACs(M)  cpu/trace img/s  cpu/openvino p50 ms  cpu/openvino p90 ms  proxy" in r.stdout
    assert _row(r.stdout, 0)[7:] == ["800", "2.50", "2.90", "50.0%", "yes", "*"]
    assert _row(r.stdout, 2)[7:] == ["900", "5.00", "5.50", "55.0%", "no"]  # over 4 ms on openvino
    # Pareto over the proxy and both targets: #3 is slower than #0 on trace but faster on openvino
    assert [_row(r.stdout, n)[-1] == "*" for n in range(5)] == [True, True, False, True, False]

    rows = json.loads(run_main(capsys, "show", "--study", "two", "--storage", studies, "--json").stdout)
    trace, openvino = rows[2]["targets"]
    assert (trace["throughput"], trace["feasible"]) == (900.0, True)
    assert (openvino["p50_ms"], openvino["p90_ms"], openvino["feasible"]) == (pytest.approx(5.0), 5.5, False)
    table = list(csv.DictReader(io.StringIO(run_main(capsys, "show", "--study", "two", "--storage", studies, "--csv").stdout)))
    assert [float(table[3][k]) for k in ("cpu/trace img/s", "cpu/openvino p50 ms", "cpu/openvino p90 ms")] == [
        700.0,
        pytest.approx(2.0),
        2.2,
    ]


def test_show_prints_a_latency_study_in_ms(studies, capsys):
    r = run_main(capsys, "show", "--study", "lat", "--storage", studies)
    assert r.returncode == 0, r.stderr
    assert "budget <= 4 ms p50" in r.stdout and "img/s" not in r.stdout
    assert "MACs(M)  p50 ms  proxy" in r.stdout
    assert _row(r.stdout, 1)[7:] == ["3.20", "60.0%", "yes", "*"]
    table = list(csv.DictReader(io.StringIO(run_main(capsys, "show", "--study", "lat", "--storage", studies, "--csv").stdout)))
    assert float(table[1]["p50 ms"]) == pytest.approx(3.2)


def test_studies_prints_a_column_per_target(studies, capsys):
    r = run_main(capsys, "studies", "--storage", studies)
    assert r.returncode == 0, r.stderr
    assert "pareto  target 1 (budget)       target 2 (budget)         proxy" in r.stdout
    two = next(line for line in r.stdout.splitlines() if line.startswith("two "))
    assert two.split()[:4] == ["two", "5", "4", "3"] and "cpu/trace >= 500 img/s  cpu/openvino <= 4 ms p50" in two
    lat = next(line for line in r.stdout.splitlines() if line.startswith("lat "))
    assert lat.split()[4:10] == ["cpu/trace", "<=", "4", "ms", "p50", "-"] and "img/s" not in lat
    listed = {s["study"]: s for s in json.loads(run_main(capsys, "studies", "--storage", studies, "--json").stdout)}
    assert [(t["target"], t["metric"], t.get("budget_ms")) for t in listed["two"]["targets"]] == [
        ("cpu/trace:500-imgs/s", "throughput", None),
        ("cpu/openvino:4ms", "latency", 4.0),
    ]
    assert listed["lat"]["targets"][0]["budget_ms"] == 4.0 and listed["lat"]["pareto"] == 3


def test_pareto_draws_a_panel_per_target(studies, tmp_path, capsys):
    from PIL import Image

    png, html = tmp_path / "two.png", tmp_path / "two.html"
    r = run_main(capsys, "pareto", "--study", "two", "--storage", studies, "--out", str(png), "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "panel 1: cpu/trace: budget >= 500 img/s" in r.stdout and "panel 2: cpu/openvino: budget <= 4 ms p50" in r.stdout
    assert "Pareto set 3, other feasible 1, under budget 1" in r.stdout
    view = json.loads(run_main(capsys, "pareto", "--study", "two", "--storage", studies, "--json").stdout)
    trace, openvino = view["panels"]
    assert (trace["unit"], trace["budget"], openvino["unit"], openvino["budget"]) == ("img/s", 500.0, "ms", pytest.approx(4.0))
    assert [(p["label"][:2], p["x"]) for p in trace["front"]] == [("#1", 600.0), ("#3", 700.0), ("#0", 800.0)]
    assert [(p["label"][:2], p["x"]) for p in openvino["front"]] == [
        ("#3", pytest.approx(2.0)),
        ("#0", pytest.approx(2.5)),
        ("#1", pytest.approx(3.2)),
    ]
    assert [p["x"] for p in openvino["under_budget"]] == [pytest.approx(5.0)]
    two_wide = Image.open(png).size
    text = _plain(html.read_text())
    assert "cpu/openvino: budget <= 4 ms p50" in text and "budget >= 500 img/s" in text
    assert (
        "cpu/openvino: budget" in text and "p50 latency at batch 1 (ms, log scale)" in text and "throughput (images/s, log scale)" in text
    )

    png, html = tmp_path / "lat.png", tmp_path / "lat.html"
    r = run_main(capsys, "pareto", "--study", "lat", "--storage", studies, "--out", str(png), "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "vs p50 latency, budget <= 4 ms p50" in r.stdout and "img/s" not in r.stdout
    assert Image.open(png).size[0] < two_wide[0]  # one panel
    text = _plain(html.read_text())
    assert "p50 latency at batch 1 (ms, log scale)" in text and "budget <= 4 ms p50" in text and "images/s" not in text
    panel = json.loads(run_main(capsys, "pareto", "--study", "lat", "--storage", studies, "--json").stdout)["panels"]
    assert [(p["unit"], p["budget"]) for p in panel] == [("ms", pytest.approx(4.0))]


def test_export_writes_a_row_per_target(studies, tmp_path, capsys):
    out = tmp_path / "two"
    r = run_main(capsys, "export", "--study", "two", "--storage", studies, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "(cpu/trace 700 img/s, cpu/openvino p50 2.00 ms)" in r.stdout
    card = (out / f"trial-0-{_config(0).short_hash()}" / "README.md").read_text()
    assert "on 2 targets (cpu/trace >= 500 img/s, cpu/openvino <= 4 ms p50)" in card
    assert "| cpu/trace throughput | 800 img/s (cpu; trace, batch 16, 1 thread, fp32) |" in card
    assert "| cpu/openvino latency | p50 2.50 ms, p90 2.90 ms at batch 1 (cpu; openvino, batch 1, 1 thread, fp32, latency) |" in card
    index = json.loads((out / "index.json").read_text())
    assert [t["budget_text"] for t in index["targets"]] == [">= 500 img/s", "<= 4 ms p50"]
    assert sorted(m["trial"] for m in index["models"]) == [0, 1, 3]  # the Pareto set over both targets
    first = next(m for m in index["models"] if m["trial"] == 1)
    assert first["targets"][0]["throughput"] == 600.0
    assert (first["targets"][1]["p50_ms"], first["targets"][1]["p90_ms"]) == (pytest.approx(3.2), 3.8)

    out = tmp_path / "lat"
    r = run_main(capsys, "export", "--study", "lat", "--storage", studies, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "(cpu/trace p50 3.20 ms)" in r.stdout
    card = (out / f"trial-1-{_config(1).short_hash()}" / "README.md").read_text()
    assert "| latency | p50 3.20 ms at batch 1 (cpu; trace, batch 1, 1 thread, fp32, latency) |" in card
    assert "under a budget of 4 ms p50" in card and "img/s" not in card
    measurement = json.loads((out / f"trial-1-{_config(1).short_hash()}" / "measurement.json").read_text())
    assert measurement["targets"][0]["p50_ms"] == pytest.approx(3.2) and measurement["targets"][0]["unit"] == "ms"


def test_a_latency_study_shows_the_stored_p90(studies, measured, tmp_path, capsys):
    r = run_main(capsys, "show", "--study", "measured", "--storage", studies)
    assert r.returncode == 0, r.stderr
    assert "MACs(M)  p50 ms  p90 ms  proxy" in r.stdout
    for i, m in enumerate(measured):
        assert _row(r.stdout, i)[7:9] == [fmt_ms(m.p50_ms), fmt_ms(m.p90_ms)]
    out = tmp_path / "measured"
    r = run_main(capsys, "export", "--study", "measured", "--storage", studies, "--trial", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = measured[1]
    card = (out / f"trial-1-{_config(1).short_hash()}" / "README.md").read_text()
    assert f"| latency | p50 {fmt_ms(m.p50_ms)} ms, p90 {fmt_ms(m.p90_ms)} ms at batch 1 ({m.device['name']}; trace, batch 1" in card


def test_a_latency_drift_is_reported_in_ms():
    from effvit_nas.results.export import unit_drift
    from effvit_nas.trials.records import study_targets

    ident = _identity("cpu", 250.0, BenchSettings(batch=1, metric="latency"))
    (lat,) = study_targets(ident)
    (tp,) = study_targets({**ident, "bench": asdict(TRACE)})
    # 25 % more images/s is a p50 20 % shorter: 4 ms -> 3.2 ms
    assert unit_drift(lat, 0.25) == pytest.approx(-0.2) and unit_drift(tp, 0.25) == 0.25


def test_export_remeasure_measures_every_target(studies, local_ray, tmp_path, capsys):
    """A 2-target trial measured here for real on both targets (cpu/trace throughput, cpu/eager
    latency), exported with --remeasure: the card has a re-measured row per target, in its unit."""
    import optuna

    from effvit_nas.measure.devices import fingerprint
    from effvit_nas.measure.store import MeasurementStore
    from effvit_nas.measure.timing import measure

    benches = [BenchSettings(batch=16, **FAST_BENCH), BenchSettings(batch=1, backend="eager", metric="latency", **FAST_BENCH)]
    ident = _identity("cpu", 1.0, benches[0])
    ident["targets"] = [
        {"spec": spec, "device": "cpu", "backend": b.backend, "metric": b.metric, "budget": 1.0, "bench": asdict(b)}
        for spec, b in zip(("cpu/trace:1-imgs/s", "cpu/eager:1s"), benches, strict=True)
    ]
    study = _study(studies, "remeasure", ident, 3)
    store, device = MeasurementStore(studies), fingerprint("cpu")
    ms = [measure(_config(0), b, "cpu", device) for b in benches]
    for m, b in zip(ms, benches, strict=True):
        store.put(m, b.key())
    attrs = {**_attrs(0, 0.5, ms[0].throughput), "device_id": device["id"]}
    attrs["targets"] = [
        {"figure": m.throughput, "measured": True, "device_id": device["id"], "p90_ms": m.p90_ms if m.p90_ms == m.p90_ms else None}
        for m in ms
    ]
    study.add_trial(
        optuna.trial.create_trial(values=[0.5, *(m.throughput for m in ms)], constraints={"a": -1.0, "b": -1.0}, user_attrs=attrs)
    )

    out = tmp_path / "remeasure"
    r = run_main(capsys, "export", "--study", "remeasure", "--storage", studies, "--trial", "0", "--remeasure", "--out", str(out))
    assert r.returncode == 0, r.stderr
    folder = out / f"trial-0-{_config(0).short_hash()}"
    trace, eager = json.loads((folder / "measurement.json").read_text())["targets"]
    assert (
        f"(re-measured: cpu/trace {100 * trace['drift']:+.1f} %" in r.stdout and f"cpu/eager p50 {100 * eager['drift']:+.1f} %" in r.stdout
    )
    again = [store.get(_config(0).short_hash(), device["id"], b.key()) for b in benches]  # what --remeasure stored
    assert trace["remeasured"] == again[0].throughput and eager["remeasured"] == pytest.approx(again[1].p50_ms)
    assert trace["drift"] == pytest.approx(again[0].throughput / ms[0].throughput - 1)
    assert eager["drift"] == pytest.approx(again[1].p50_ms / ms[1].p50_ms - 1)  # in ms: a longer p50 is a positive drift
    card = (folder / "README.md").read_text()
    assert f"| re-measured (cpu/trace) | {again[0].throughput:,.0f} img/s (drift {100 * trace['drift']:+.1f} %" in card
    assert f"| re-measured (cpu/eager) | p50 {fmt_ms(again[1].p50_ms)} ms (drift {100 * eager['drift']:+.1f} %" in card
