"""How runs of one study go, without Ray: refusing to resume another problem, --timeout,
--seed-presets and --sampler nsga2, over the fake loop of test_screening."""

import json
from dataclasses import replace

import optuna
import pytest

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.errors import UserError
from effvit_nas.measure.settings import BenchSettings
from effvit_nas.search.loop import run_search
from effvit_nas.search.study import open_study
from tests.support import by_width, fake_problem_options, fake_proxies, patch_everywhere, width_load


@pytest.fixture
def cheap_costs(monkeypatch):
    """Costs from the widths instead of building each model (a fifth of a second at 64 px,
    seconds at 224 px): these tests are about how the loop runs, not what candidates cost."""
    from effvit_nas.model import cost

    patch_everywhere(monkeypatch, cost, "model_cost", lambda c: cost.ModelCost(params=1000 * width_load(c), macs=10**6 * width_load(c)))


def _trials(options) -> list:
    return optuna.load_study(study_name=options.study, storage=options.storage).get_trials()


@pytest.mark.parametrize("change", [{"device": "cuda"}, {"space": "efficientvit"}, {"proxy": "naswot"}, {"bench": BenchSettings(batch=32)}])
def test_resuming_a_study_about_another_problem_is_refused_with_one_line(tmp_path, change):
    """Another device, space, proxy or measurement protocol would mix incomparable trials."""
    problem, options = fake_problem_options(tmp_path, trials=1)
    open_study(problem, options)
    (what,) = change
    with pytest.raises(UserError, match=f"created with another {what} ") as e:
        open_study(replace(problem, **change), options)
    assert "\n" not in str(e.value)


def test_a_study_resumes_from_its_space_at_another_path_but_not_from_an_edited_one(tmp_path):
    """A moved project or a reinstall changes where the YAML lives, not what the study
    searched; editing the choices does change it. Exports read the stored choices, so the
    study stays usable after its file is gone."""
    from effvit_nas.arch.space import SPACES_DIR
    from effvit_nas.results.studies import StudyInfo

    text = (SPACES_DIR / "tiny.yaml").read_text()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, moved = tmp_path / "a" / "s.yaml", tmp_path / "b" / "s.yaml"
    first.write_text(text)
    moved.write_text(text)
    problem, options = fake_problem_options(tmp_path, trials=1)
    handle = open_study(replace(problem, space=str(first)), options)
    open_study(replace(problem, space=str(moved)), options)
    first.unlink()
    assert StudyInfo.of(handle.study).search_space().to_dict() == load_space(moved).to_dict()

    space = load_space(moved).to_dict()
    space["depths"] = [[1], [1], [1]]
    moved.write_text(json.dumps(space))
    with pytest.raises(UserError, match=r"created with another space \(its choices differ from those in '.+b/s\.yaml'\)"):
        open_study(replace(problem, space=str(moved)), options)


def _supernet_folder(folder, seed: int):
    """A supernet folder as `supernet train` leaves one, with untrained weights drawn with ``seed``."""
    import torch
    import yaml
    from safetensors.torch import save_file

    from effvit_nas.supernet.model import Supernet
    from effvit_nas.supernet.scoring import SPACE_FILE, WEIGHTS_FILE

    torch.manual_seed(seed)
    space = load_space("tiny")
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in Supernet(space).state_dict().items()}, str(folder / WEIGHTS_FILE))
    (folder / SPACE_FILE).write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    return folder


def test_a_study_resumes_from_its_supernet_at_another_path_but_not_from_other_weights(tmp_path):
    """A supernet proxy is what its weights are: a copied folder resumes the study (the
    benchmarks copy studies between clones), a supernet retrained in place does not."""
    import shutil

    first = _supernet_folder(tmp_path / "a", seed=0)
    problem, options = fake_problem_options(tmp_path, trials=1)
    open_study(replace(problem, proxy=f"supernet:{first}"), options)
    moved = shutil.copytree(first, tmp_path / "b")
    shutil.rmtree(first)
    open_study(replace(problem, proxy=f"supernet:{moved}"), options)

    shutil.rmtree(moved)
    _supernet_folder(moved, seed=1)
    with pytest.raises(
        UserError, match=r"created with another proxy \(supernet weights [0-9a-f]{12}, not those now in '.+b'\); .+ with these weights$"
    ):
        open_study(replace(problem, proxy=f"supernet:{moved}"), options)
    with pytest.raises(UserError, match="created with another proxy "):
        open_study(replace(problem, proxy="naswot"), options)


def test_a_finished_study_trains_on_after_its_supernet_is_gone_and_an_unfinished_one_does_not(tmp_path, capsys):
    """--train-top after a finished search scores no candidate, so a fresh clone without the
    supernet's weights (they are not committed) can still train the study's models; a study
    with trials left to score still needs them."""
    import shutil

    # private: the proxy check alone; a public `search` would run the resumed study
    from effvit_nas.cli.search import _checked_proxy
    from effvit_nas.search.study import stored_problem

    folder = _supernet_folder(tmp_path / "net", seed=0)
    problem, options = fake_problem_options(tmp_path, trials=2)
    problem = replace(problem, proxy=f"supernet:{folder}")
    run_search(problem, options, measure=by_width, run_proxies=fake_proxies)
    shutil.rmtree(folder)
    space = load_space(problem.space)

    opts = {"proxy_name": f"supernet:{folder}"}
    proxy_def = _checked_proxy(opts, options, stored_problem(options), space)
    assert proxy_def.startswith("supernet@") and opts["proxy_name"] == problem.proxy
    assert "is not a trained supernet folder" in capsys.readouterr().err

    def nothing(*_):
        pytest.fail("a finished study measured or scored a candidate")

    summary = run_search(replace(problem, proxy_def=proxy_def), options, measure=nothing, run_proxies=nothing)
    assert summary.complete == 2 and summary.run_trials == 0
    for more in (replace(options, trials=3), replace(options, trials=None, timeout_s=60)):
        with pytest.raises(UserError, match="is not a trained supernet folder"):
            _checked_proxy({"proxy_name": f"supernet:{folder}"}, more, stored_problem(more), space)
    with pytest.raises(UserError, match="unknown proxy"):  # another kind of proxy is not let through
        _checked_proxy({"proxy_name": "nonesuch"}, options, stored_problem(options), space)


class FakeClock:
    """The loop module's ``time``: it moves only when the fake measurer says so."""

    def __init__(self):
        self.now = 1_000.0

    def time(self) -> float:
        return self.now

    perf_counter = time
    monotonic = time


def test_a_timeout_without_trials_stops_the_search_at_its_deadline(tmp_path, monkeypatch, cheap_costs):
    """--timeout 15s: each measurement takes 10 s on the loop's clock, so the round that would
    start at 20 s is past the deadline and never asked for: 2 trials."""
    from effvit_nas.search import loop

    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock)
    start = clock.now

    def ten_seconds(config):
        if clock.now - start > 100:  # the deadline is ignored: stop here rather than forever
            pytest.fail("still measuring 100 s into a 15 s search")
        clock.now += 10
        return by_width(config)

    problem, options = fake_problem_options(tmp_path, trials=None, timeout_s=15)
    summary = run_search(problem, options, measure=ten_seconds, run_proxies=fake_proxies)
    assert summary.complete == 2 and len(_trials(options)) == 2 and clock.now == start + 20


def _presets_in(space_name: str) -> dict[str, ArchConfig]:
    space = load_space(space_name)
    inside = {name: p.replace(num_classes=space.num_classes) for name, p in PRESETS.items()}
    return {name: p for name, p in inside.items() if space.contains(p)}


def _preset_run(tmp_path, first: int, total: int) -> list:
    """``first`` trials with --seed-presets in the bundled space (M0-M5 are all points of it),
    then the same run resumed up to ``total``: the study's trials."""
    problem, options = fake_problem_options(tmp_path, trials=first, seed_presets=True)
    problem = replace(problem, space="efficientvit")
    run_search(problem, options, measure=by_width, run_proxies=fake_proxies)
    run_search(problem, replace(options, trials=total), measure=by_width, run_proxies=fake_proxies)
    return _trials(options)


def test_seed_presets_are_the_first_trials_and_a_resumed_run_does_not_enqueue_them_again(tmp_path, cheap_costs):
    presets = _presets_in("efficientvit")
    trials = _preset_run(tmp_path, first=len(presets), total=len(presets) + 1)
    assert len(presets) == 6 and len(trials) == 7
    assert [t.user_attrs.get("preset") for t in trials] == [*presets, None]
    assert [ArchConfig.from_dict(t.user_attrs["config"]) for t in trials[:6]] == list(presets.values())


def test_a_run_stopped_before_its_presets_ran_resumes_them_once(tmp_path, cheap_costs):
    trials = _preset_run(tmp_path, first=2, total=6)
    assert [t.user_attrs.get("preset") for t in trials] == list(_presets_in("efficientvit"))  # no duplicates waiting


def test_the_nsga2_sampler_proposes_every_trial(tmp_path, cheap_costs):
    """Each trial carries the generation that Optuna's NSGA-II sampler stamps on its trials."""
    problem, options = fake_problem_options(tmp_path, trials=3, sampler="nsga2")
    assert run_search(problem, options, measure=by_width, run_proxies=fake_proxies).complete == 3
    trials = _trials(options)
    assert len(trials) == 3 and all(t.system_attrs.get("NSGAIISampler:generation") == 0 for t in trials)
