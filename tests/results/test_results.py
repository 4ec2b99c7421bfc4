"""Reports and artifacts of a finished study: show --csv, studies, pareto plots, export."""

import csv
import io
import json

import numpy as np
import pytest

from effvit_nas.arch.config import ArchConfig, load_config
from effvit_nas.results.cards import set_section
from tests.support import private_copy, run_main


def _budget(url: str) -> float:
    """The small study's budget as stored (0.3x M0 measured when it was made)."""
    import optuna

    study = optuna.load_study(study_name="small", storage=url)
    assert study.user_attrs["effvit"]["budget_spec"] == "0.3xM0"
    return study.user_attrs["effvit"]["budget"]


def test_show_csv_and_studies(small_study, capsys):
    url, name = small_study
    r = run_main(capsys, "show", "--study", name, "--storage", url, "--csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 8 and rows[0]["number"] == "0"
    for row in rows:
        ArchConfig.from_dict(json.loads(row["config"]))  # the config cell round-trips
        assert float(row["throughput"]) > 0 and row["state"] == "COMPLETE"
    listed = json.loads(run_main(capsys, "studies", "--storage", url, "--json").stdout)
    assert [s["study"] for s in listed] == [name]
    s = listed[0]
    assert s["trials"] == 8 and s["device"] == "cpu" and s["budget"] == _budget(url) and s["created"]
    assert s["feasible"] == sum(row["feasible"] == "True" for row in rows)
    assert s["pareto"] == sum(row["pareto"] == "True" for row in rows) >= 1
    assert "small" in run_main(capsys, "studies", "--storage", url).stdout


def test_pareto_plot_png_html_and_presets(small_study, tmp_path, capsys, monkeypatch):
    # a private copy: --with-presets stores M0..M5, and the first check (only M0 there) must not
    # depend on whether another test already ran this on the shared study, nor leave them for it
    url, name = private_copy(small_study, tmp_path), small_study[1]
    png, html = tmp_path / "p.png", tmp_path / "p.html"
    r = run_main(capsys, "pareto", "--study", name, "--storage", url, "--out", str(png), "--html", str(html), "--json")
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    # only M0, measured when the study's 0.3xM0 budget was resolved, and never scored yet
    assert [(x["name"], x["accuracy"]) for x in view["references"]] == [("M0@64px", None)]
    # drawn where the budget line puts it (the median of the budget's runs), not at the newest run
    assert view["references"][0]["throughput"] == pytest.approx(_budget(url) / 0.3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    text = html.read_text()
    budget = _budget(url)
    assert "plotly" in text and "Pareto front" in text and f"budget {budget:,.0f} img" in text
    front = view["front"]
    assert front and all(p["throughput"] >= budget for p in front)
    assert sorted(p["throughput"] for p in front) == [p["throughput"] for p in front]
    accs = [p["accuracy"] for p in front]  # along the front: faster means lower proxy value
    assert accs == sorted(accs, reverse=True)
    assert "cpu" in view["subtitle"] and "trace, batch 16, 1 thread, fp32" in view["subtitle"]

    r = run_main(capsys, "pareto", "--study", name, "--storage", url, "--out", str(png), "--with-presets", "--json")
    assert r.returncode == 0, r.stderr
    refs = json.loads(r.stdout[r.stdout.index("{") :])["references"]
    assert [x["name"] for x in refs] == [f"M{i}@64px" for i in range(6)]
    assert all(x["throughput"] > 0 and x["accuracy"] is not None for x in refs)
    assert refs[0]["throughput"] == pytest.approx(_budget(url) / 0.3)
    # stored: a re-plot shows them without measuring again; --json alone writes no file
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    again = json.loads(run_main(capsys, "pareto", "--study", name, "--storage", url, "--json").stdout)
    assert again["references"] == refs
    assert list((tmp_path / "cwd").iterdir()) == []


def test_export_pareto_with_onnx_and_remeasure(small_study, tmp_path, capsys):
    import onnxruntime as ort
    import torch

    from effvit_nas.model.efficientvit import build_model

    url, name = private_copy(small_study, tmp_path), small_study[1]  # --remeasure stores: keep the shared study as made
    out = tmp_path / "export"
    r = run_main(capsys, "export", "--study", name, "--storage", url, "--out", str(out), "--onnx", "--remeasure", "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    shown = json.loads(run_main(capsys, "show", "--study", name, "--storage", url, "--json").stdout)
    assert sorted(d["trial"] for d in done) == sorted(row["number"] for row in shown if row["pareto"])
    index = json.loads((out / "index.json").read_text())
    assert [m["trial"] for m in index["models"]] == [d["trial"] for d in done]
    for d in done:
        folder = out / f"trial-{d['trial']}-{d['hash']}"
        cfg = load_config(folder)  # the folder itself loads, as train reads it
        assert cfg.short_hash() == d["hash"] == load_config(folder / "config.yaml").short_hash()
        m = json.loads((folder / "measurement.json").read_text())
        assert m["device"]["id"] and m["protocol"]["batch"] == 16 and m["record"]["config_hash"] == d["hash"]
        assert m["remeasured"] > 0 and abs(m["drift"] - (m["remeasured"] / m["throughput"] - 1)) < 1e-9
        assert m["drift_flag"] == (abs(m["drift"]) > 0.05) == d["drifted"]
        p = json.loads((folder / "proxy.json").read_text())
        assert p["proxy"] == "naswot" and p["value"] == d["accuracy"]
        assert "re-measured" in (folder / "README.md").read_text()
        # the ONNX file is the same network, with a free batch axis
        model = build_model(cfg).eval()
        x = torch.randn(3, 3, cfg.img_size, cfg.img_size)
        with torch.no_grad():
            ref = model(x).numpy()
        got = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
        assert np.abs(got - ref).max() < 1e-4


def test_export_top_and_trial_and_timm_kwargs(small_study, tmp_path, capsys):
    url, name = small_study
    rows = json.loads(run_main(capsys, "show", "--study", name, "--storage", url, "--json").stdout)
    feasible = sorted((r for r in rows if r["feasible"]), key=lambda r: -r["accuracy"])
    r = run_main(capsys, "export", "--study", name, "--storage", url, "--out", str(tmp_path / "top"), "--top", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert [d["trial"] for d in json.loads(r.stdout)] == [x["number"] for x in feasible[:2]]
    # exporting one of them again into the same folder keeps what training added and the other's listing
    first = tmp_path / "top" / f"trial-{feasible[0]['number']}-{feasible[0]['hash']}"
    set_section(first / "README.md", "## Trained", "top-1 91.0 % after 30 epochs")
    r = run_main(capsys, "export", "--study", name, "--storage", url, "--out", str(tmp_path / "top"), "--trial", str(feasible[0]["number"]))
    assert r.returncode == 0, r.stderr
    assert "## Trained\n\ntop-1 91.0 % after 30 epochs" in (first / "README.md").read_text()
    index = json.loads((tmp_path / "top" / "index.json").read_text())
    assert sorted(m["trial"] for m in index["models"]) == sorted(x["number"] for x in feasible[:2])
    r = run_main(capsys, "export", "--study", name, "--storage", url, "--out", str(tmp_path / "one"), "--trial", "0", "--json")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "one" / f"trial-0-{rows[0]['hash']}"
    info = run_main(capsys, "model", "info", str(folder / "config.yaml"), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["hash"] == rows[0]["hash"]
    from effvit_nas.model.timm_compat import timm_kwargs

    kwargs = timm_kwargs(load_config(folder))
    assert (folder / "timm.json").exists() == (kwargs is not None)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["export", "--study", "nope", "--out", "{tmp}/x"], "no study 'nope'"),
        (["export", "--study", "small", "--out", "{tmp}/x", "--trial", "99"], "no trial 99"),
        (["export", "--study", "small", "--out", "/proc/forbidden/x"], "--out '/proc/forbidden/x' cannot be created"),
        (["export", "--study", "small", "--out", "{tmp}/x", "--top", "2", "--trial", "1"], "one of --pareto"),
        (["export", "--study", "empty", "--out", "{tmp}/x"], "is empty"),
        (["pareto", "--study", "empty", "--out", "{tmp}/p.png"], "no complete trials"),
        (["pareto", "--study", "nope", "--out", "{tmp}/newdir/p.png"], "no study 'nope'"),
        (["pareto", "--study", "small", "--out", "{tmp}/p.jpg"], "must name a .png file"),
        (["pareto", "--study", "small", "--out", "/proc/forbidden/p.png"], "cannot create the folder"),
        (["show", "--study", "nope"], "no study 'nope'"),
    ],
)
def test_results_bad_input(small_study, tmp_path, capsys, args, needle):
    from effvit_nas.search.options import RunOptions
    from effvit_nas.search.problem import SearchProblem
    from effvit_nas.search.study import open_study

    url = private_copy(small_study, tmp_path)
    open_study(SearchProblem(device="cpu", budget=2000.0, space="tiny"), RunOptions(study="empty", storage=url, trials=1))
    r = run_main(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args], "--storage", url)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "newdir").exists()  # a refused command leaves no folder behind


def test_trial_without_config_is_refused(small_study, tmp_path, capsys):
    import optuna

    url = private_copy(small_study, tmp_path)
    study = optuna.load_study(study_name="small", storage=url)
    t = study.ask()  # a trial that never got a config (e.g. failed before sampling)
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    r = run_main(capsys, "export", "--study", "small", "--storage", url, "--out", str(tmp_path / "x"), "--trial", str(t.number))
    assert r.returncode == 2 and f"trial {t.number} of 'small' has no config" in r.stderr


def test_study_database_is_readable_by_optuna_dashboard(small_study):
    """optuna-dashboard's own API (its WSGI app, no server) lists the study and its trials."""
    import sys

    from optuna_dashboard import wsgi

    url, name = small_study
    app = wsgi(url)

    def get(path: str) -> dict:
        status = {}
        env = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        }
        body = b"".join(app(env, lambda s, h, exc=None: status.setdefault("s", s)))
        assert status["s"].startswith("200"), (status, body[:300])
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    mine = next(s for s in studies if s["study_name"] == name)
    assert mine["directions"] == ["maximize", "maximize"]
    detail = get(f"/api/studies/{mine['study_id']}")
    assert len(detail["trials"]) == 8 and all(t["state"] == "Complete" for t in detail["trials"])


def test_export_writes_timm_json_that_builds_the_same_network(small_study, tmp_path, capsys):
    """A trial timm can express (M0 at the space's 64 px) gets a timm.json whose kwargs build
    timm's EfficientVitMsra with our model's state-dict keys and shapes; one it cannot express
    gets none (the small study's tiny-space trials use value/FFN ratios timm lacks)."""
    import shutil

    import optuna
    from timm.models.efficientvit_msra import EfficientVitMsra

    from effvit_nas.arch.config import PRESETS
    from effvit_nas.model.efficientvit import build_model
    from effvit_nas.model.timm_compat import timm_kwargs

    url, name = small_study
    shutil.copy(url.removeprefix("sqlite:///"), tmp_path / "s.db")
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.load_study(study_name=name, storage=url)
    t = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("config"))
    m0 = PRESETS["M0"].replace(img_size=64, num_classes=10)
    attrs = {**t.user_attrs, "config": m0.to_dict(), "config_hash": m0.short_hash()}
    study.add_trial(
        optuna.trial.create_trial(
            values=t.values, params=t.params, distributions=t.distributions, user_attrs=attrs, system_attrs=t.system_attrs
        )
    )
    number = len(study.trials) - 1
    assert timm_kwargs(ArchConfig.from_dict(t.user_attrs["config"])) is None  # the control: no timm.json for it
    r = run_main(
        capsys,
        "export",
        "--study",
        name,
        "--storage",
        url,
        "--out",
        str(tmp_path / "x"),
        "--trial",
        str(t.number),
        "--trial",
        str(number),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    plain, expressible = (
        tmp_path / "x" / f"trial-{n}-{h}" for n, h in ((t.number, t.user_attrs["config_hash"]), (number, m0.short_hash()))
    )
    assert not (plain / "timm.json").exists()
    kwargs = json.loads((expressible / "timm.json").read_text())["kwargs"]
    theirs, ours = EfficientVitMsra(**kwargs).state_dict(), build_model(m0).state_dict()
    assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}
