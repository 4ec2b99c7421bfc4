import json
import math

import pytest

from effvit_nas.data import DataConfig, load_data
from effvit_nas.errors import SettingError, UserError
from effvit_nas.proxy.registry import PROXIES, evaluate_proxy
from effvit_nas.proxy.short_training import ShortTrainSettings
from tests.support import TINY, run_main


@pytest.fixture(scope="module")
def small_data():
    return load_data(DataConfig(img_size=32, num_classes=4, train_per_class=64, val_per_class=16))


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    """Three classes of flat, clearly different colours: any working training loop learns it."""
    from tests.support import make_image_folder

    root = tmp_path_factory.mktemp("easy")
    make_image_folder(root, classes=("a", "b", "c"), per=16, size=32)
    return load_data(DataConfig(str(root), img_size=32))


def test_short_training_learns_and_is_deterministic(easy_data, small_data):
    learned = evaluate_proxy("train", TINY, easy_data, ShortTrainSettings(steps=100, batch=16, lr=3e-3, seed=1, threads=1))
    assert learned.kind == "accuracy" and learned.value > 0.9
    assert learned.details["final_loss"] < math.log(3)
    s = ShortTrainSettings(steps=40, batch=16, lr=3e-3, seed=1, threads=1)
    a = evaluate_proxy("train", TINY, small_data, s)
    b = evaluate_proxy("train", TINY, small_data, s)
    assert 0 <= a.value <= 1
    assert a.value == b.value and a.details["final_loss"] == b.details["final_loss"]
    c = evaluate_proxy("train", TINY, small_data, ShortTrainSettings(steps=40, batch=16, lr=3e-3, seed=2, threads=1))
    assert c.details["final_loss"] != a.details["final_loss"]


def test_intermediate_reports_can_stop_training(small_data):
    seen = []

    def report(step, acc):
        seen.append((step, acc))
        return step >= 20

    r = evaluate_proxy("train", TINY, small_data, ShortTrainSettings(steps=100, batch=16, eval_every=10, threads=1), report)
    assert [s for s, _ in seen] == [10, 20] and r.details["stopped_early"] and r.details["steps"] == 20


@pytest.mark.parametrize("name", [p for p in PROXIES if p != "train"])
def test_zero_cost_proxies_are_finite_and_deterministic(small_data, name):
    a = evaluate_proxy(name, TINY, small_data)
    b = evaluate_proxy(name, TINY, small_data)
    assert a.kind == "score" and math.isfinite(a.value) and a.value == b.value


def test_zero_cost_proxies_see_capacity(small_data):
    bigger = TINY.replace(widths=(32, 64, 96), depths=(1, 2, 2))
    for name in ("synflow", "params", "macs"):
        assert evaluate_proxy(name, bigger, small_data).value > evaluate_proxy(name, TINY, small_data).value


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        (dict(steps=0), "ShortTrainSettings.steps"),
        (dict(batch=0), "ShortTrainSettings.batch"),
        (dict(lr=0.0), "ShortTrainSettings.lr"),
        (dict(eval_every=-1), "ShortTrainSettings.eval_every"),
    ],
)
def test_bad_short_train_settings_name_the_setting(kwargs, setting):
    with pytest.raises(SettingError) as e:
        ShortTrainSettings(**kwargs)
    assert e.value.setting == setting and str(e.value).startswith(setting) and "--" not in str(e.value)


def test_unknown_proxy():
    with pytest.raises(UserError, match="unknown proxy"):
        evaluate_proxy("magic", TINY, None)


def test_proxy_cli(tmp_path, capsys):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.to_yaml())
    r = run_main(
        capsys,
        "proxy",
        str(p),
        "--steps",
        "5",
        "--img-size",
        "32",
        "--classes",
        "3",
        "--train-per-class",
        "16",
        "--val-per-class",
        "8",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["proxy"] == "train" and 0 <= j["accuracy"] <= 1 and j["seconds"] > 0 and j["num_classes"] == 3
    r = run_main(
        capsys, "proxy", str(p), "M0", "--proxy", "naswot", "--img-size", "32", "--classes", "3", "--train-per-class", "16", "--json"
    )
    both = json.loads(r.stdout)
    assert [x["proxy"] for x in both] == ["naswot", "naswot"] and all("score" in x for x in both)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--proxy", "magic"], "unknown proxy"),
        (["--data", "/no/such/dir"], "does not exist"),
        (["--steps", "0"], "--steps"),
    ],
)
def test_proxy_cli_bad_input(capsys, args, needle):
    r = run_main(capsys, "proxy", "M0", *args)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_evaluation_records_no_autograd_graph_and_restores_the_mode():
    import torch

    from effvit_nas.model.accuracy import evaluate

    grad_enabled = []

    class Recorder(torch.nn.Linear):
        def forward(self, x):
            grad_enabled.append(torch.is_grad_enabled())
            return super().forward(x.flatten(1))

    net = Recorder(3 * 2 * 2, 2).train()
    x = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    acc = evaluate(net, x, torch.zeros(5, dtype=torch.int64), batch=2)
    assert 0 <= acc <= 1 and grad_enabled == [False] * 3 and net.training
