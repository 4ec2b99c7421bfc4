import json

import pytest

from tests.support import TINY, run_cli, run_main


@pytest.fixture
def tiny_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.to_yaml())
    return p


def test_bench_measures_then_reuses(tmp_path, tiny_file):
    db = f"sqlite:///{tmp_path}/bench.db"
    args = ["bench", str(tiny_file), "--device", "cpu", "--batch", "4", "--warmup", "0.2", "--duration", "0.5", "--storage", db]
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["throughput"] > 0 and j["cv"] >= 0 and j["batch"] == 4 and j["threads"] == 1
    assert j["precision"] == "fp32" and j["backend"] == "trace" and j["device"]["kind"] == "cpu"
    assert j["device"]["name"] and j["device"]["torch"] and j["cached"] is False

    r2 = run_cli(*args)
    assert r2.returncode == 0, r2.stderr
    assert "cached" in r2.stdout and "batch 4, fp32, 1 thread(s), backend trace" in r2.stdout
    assert f"{j['throughput']:.1f}" in r2.stdout
    # the cached path needs no Ray: nothing of Ray's start-up is printed
    assert "Ray" not in r2.stderr

    both = json.loads(run_cli(*args, "M0", "--fresh", "--backend", "eager", "--json").stdout)
    assert isinstance(both, list) and len(both) == 2 and not any(m["cached"] for m in both)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--device", "v100"], "not available"),
        (["--device", "cuda:7"], "not available"),
        (["--device", "quantum computer"], "unknown device"),
        (["--batch", "0"], "--batch must be positive"),
        (["--precision", "fp16"], "fp16 is not supported on cpu"),
        (["--precision", "int4"], "--precision"),
        (["--backend", "tensorrt"], "--backend"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "fp32 only"),
        (["--storage", "bogus"], "invalid storage URL"),
    ],
)
def test_bench_bad_input(tmp_path, capsys, extra, needle):
    storage = [] if "--storage" in extra else ["--storage", f"sqlite:///{tmp_path}/x.db"]
    r = run_main(capsys, "bench", "M0", *storage, *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
