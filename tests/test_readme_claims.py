"""The README's numbers are the committed results' numbers: each quoted figure is read back
from the results file it cites, so a re-run benchmark that changes them fails here until the
README is updated (nothing is measured; this reads files)."""

import json
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _md_rows(path: str, first_cell: str) -> list[list[str]]:
    """Cells of the table rows of ``path`` whose first cell is ``first_cell``."""
    rows = []
    for line in (ROOT / path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def test_speed_table_matches_model_speed_results():
    results = {r["model"]: r for r in json.loads((ROOT / "results/model_speed_cpu.json").read_text())["results"]}
    quoted = re.findall(r"^\| (M\d) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)x \|$", README, re.M)
    assert [q[0] for q in quoted] == [f"M{i}" for i in range(6)]
    for name, timm, ours, frozen, ratio in quoted:
        r = results[name]
        assert (int(timm), int(ours), int(frozen)) == tuple(round(r[k]) for k in ("timm_traced", "ours_traced", "ours_traced+opt")), name
        assert float(ratio) == round(r["speedup_opt_vs_timm_traced"], 2), name
    fold = [r["speedup_traced"] for r in results.values()]
    assert f"ours/timm traced {min(fold):.2f}–{max(fold):.2f}x" in README


def test_sampler_comparison_matches_search_quality_results():
    runs = {s: [r for r in _md_rows("results/search_quality.md", s) if len(r) == 10] for s in ("tpe", "random")}
    hv = {s: [float(r[5]) for r in runs[s]] for s in runs}
    feasible = {s: [r[6].split("/")[0] for r in runs[s]] for s in runs}
    med = {s: statistics.median(hv[s]) for s in hv}
    assert f"TPE {med['tpe']:.2f}, random {med['random']:.2f} ({med['tpe'] / med['random']:.2f}x)" in README
    per_seed = "/".join(f"{v:.2f}" for v in hv["tpe"]) + " vs " + "/".join(f"{v:.2f}" for v in hv["random"])
    assert f"({per_seed})" in README
    assert f"found {'/'.join(feasible['tpe'])} feasible\n  candidates against {'/'.join(feasible['random'])}" in README


def test_synthetic_fidelity_sentence_matches_its_table():
    quoted = {
        "naswot": "naswot",
        "train": "train (100 steps)",
        "gradnorm": "gradnorm",
        "macs": "MACs",
        "synflow": "synflow",
        "params": "params",
    }
    for proxy, name in quoted.items():
        (row,) = _md_rows("results/proxy_fidelity.md", proxy)
        spearman, kendall = (f"{float(v):+.2f}".replace("-", "−") for v in row[1:3])
        assert re.search(rf"{re.escape(name)} {re.escape(spearman)} /\s+{re.escape(kendall)}", README), (name, spearman, kendall)


def test_channels_last_speedup_matches_training_speed_results():
    rows = {
        (r["model"], r["batch"]): statistics.median(r["speedup"])
        for r in json.loads((ROOT / "results/training_speed_cpu.json").read_text())["rows"]
    }
    assert f"batch 256, runs\n  {rows[('M0', 256)]:.1f}x / {rows[('M2', 256)]:.1f}x faster" in README


def test_gpu_sentence_matches_gpu_results():
    r = json.loads((ROOT / "results/throughput_gpu.json").read_text())
    med = {n: statistics.median(v) for n, v in r["ours"].items()}
    assert f"gives M0 {med['M0']:,.0f}\nimg/s ... M5 {med['M5']:,.0f} img/s" in README
    vs = [med[n] / v for n, v in {"M0": 27644, "M1": 20093, "M2": 18218, "M3": 16644, "M4": 15914, "M5": 10621}.items()]
    assert f"{min(vs):.1f}-{max(vs):.1f}x the paper's V100 figures" in README
    ratio = [statistics.median(r["eager"][n]) / statistics.median(r["timm"][n]) for n in med]
    assert f"our model runs\n{min(ratio):.2f}-{max(ratio):.2f}x timm's fused model" in README


def test_headline_tables_match_the_searched_vs_handdesigned_results():
    """Each row of the README's five headline tables (top-1 mean ± std, median [IQR] img/s,
    params) is the committed comparison's."""
    data = json.loads((ROOT / "results/searched_vs_handdesigned.json").read_text())
    assert set(data) == {"M0", "M2", "M2-paired", "M2-lr2e-3", "M2-supernet"}
    for budget, comp in data.items():
        for row in comp["rows"]:
            q1, q3 = row["throughput_iqr"]
            quoted = (
                f"| {row['name']} | {100 * row['top1_mean']:.1f} ± {100 * row['top1_std']:.1f} | "
                f"{row['throughput_median']:,.0f} [{q1:,.0f}-{q3:,.0f}] | {row['params'] / 1e6:.2f} |"
            )
            assert quoted in README, (budget, quoted)


def test_the_running_60k_comparison_is_quoted_from_its_training_record():
    """The README's first M2-60k figure is the committed train.json's, not a remembered one."""
    runs = json.loads((ROOT / "results/searched_runs.json").read_text())["files"]
    record = runs["results/searched/M2-60k/baseline-M2/seed-0/train.json"]
    last = [100 * h["top1"] for h in record["history"][-6:]]
    assert record["epochs"] == 30 and record["data"]["train_per_class"] == 6000
    assert f"M2 seed 0 reaches {100 * record['top1']:.1f} %" in README
    assert f"flat at {min(last):.1f}-{max(last):.1f} over its\nlast six epochs" in README


def test_real_data_fidelity_table_matches_the_band_study():
    """The README's Fashion-MNIST band table (Kendall τ with its interval, seconds per candidate,
    the seed-to-seed ceiling) is the committed band study's."""
    band = json.loads((ROOT / "results/proxy_fidelity_fashion.json").read_text())["band"]
    rows = {r["proxy"]: r for r in band["rows"]}
    c = band["ceiling"]
    quoted = {"reference seed vs seed (ceiling)": (c["kendall"], c["kendall_ci"], band["reference_seconds"])}
    for name in ("macs", "naswot", "train@200", "train@50", "params"):
        quoted[name] = (rows[name]["agreement"]["kendall"], rows[name]["agreement"]["kendall_ci"], rows[name]["seconds"])
    for name, (tau, (lo, hi), seconds) in quoted.items():
        s = f"{seconds:.2f}" if seconds < 1 else f"{seconds:.0f}"
        line = f"| {name} | {tau:+.2f} [{lo:+.2f}, {hi:+.2f}] | {s} |".replace("+-", "-")
        assert line in README, line


def test_scaling_sentence_matches_the_scaling_runs():
    runs = json.loads((ROOT / "results/scaling.json").read_text())["runs"]
    by = {a: [r for r in runs if r["actors"] == a] for a in (1, 2)}

    def med(actors: int, key: str) -> float:
        return statistics.median(r[key] for r in by[actors])

    tph = {a: med(a, "trials_per_hour") for a in by}
    sentence = (
        f"{tph[1]:.0f} trials per hour with 1 measurement actor and {tph[2]:.0f} with 2 ({tph[2] / tph[1]:.2f}x); the actors "
        f"sat idle {100 * med(1, 'overhead_share'):.1f} % and {100 * med(2, 'overhead_share'):.1f} % of the loop's time, "
        f"orchestration {100 * med(1, 'orchestration_share'):.1f} % and {100 * med(2, 'orchestration_share'):.1f} % of it"
    )
    assert sentence in " ".join(README.split()), sentence


def test_anchored_repeatability_is_quoted_from_its_run():
    """The anchored and single figures' CV ranges are the committed run's."""
    results = json.loads((ROOT / "results/throughput_anchored_cpu.json").read_text())["results"]

    def cv_range(cond: str, kind: str) -> str:
        cvs = [100 * m["cv"] for m in results[cond][kind]["models"].values()]
        return f"{min(cvs):.2f}-{max(cvs):.2f} %"

    text = " ".join(README.split())
    assert f"CV **{cv_range('quiet', 'anchored')} quiet and {cv_range('busy', 'anchored')[:-2]} % busy**" in text
    single = [100 * m["cv"] for c in ("quiet", "busy") for m in results[c]["single"]["models"].values()]
    assert (
        f"single figures with {min(single[:3]):.1f}-{max(single[:3]):.1f} % quiet and {min(single[3:]):.1f}-{max(single[3:]):.1f} % busy"
        in text
    )
