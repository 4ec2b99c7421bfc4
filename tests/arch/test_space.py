import numpy as np
import optuna
import pytest

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.arch.space import SPACES_DIR, SearchSpace, load_space
from effvit_nas.errors import ConfigError

SMALL = {
    "stages": 2,
    "heads": [1, 2],
    "head_dims": [16, 32],
    "depths": [[1], [1, 2]],
    "kernels": [[5, 3], [3, 3]],
    "img_sizes": [64, 96],
    "num_classes": 10,
}


def test_default_space_contains_all_presets():
    space = load_space()
    assert space.name == "efficientvit"
    assert space.presets_inside() == dict.fromkeys(PRESETS, True)
    for cfg in PRESETS.values():
        assert space.config_from_params(space.params_from_config(cfg)) == cfg


def test_every_bundled_space_loads():
    names = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
    assert "efficientvit" in names and "tiny" in names
    for n in names:
        assert load_space(n).size() > 1


def test_samples_are_valid_members_and_round_trip():
    space = load_space()
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        cfg = space.sample(rng)  # ArchConfig validates on construction
        assert isinstance(cfg, ArchConfig) and space.contains(cfg)
        assert space.config_from_params(space.params_from_config(cfg)) == cfg
        seen.add(cfg.short_hash())
    assert len(seen) > 290  # 10^13 points: draws practically never repeat


def test_sampling_is_deterministic_under_a_seed():
    """A seed fixes the whole sequence of draws from one generator, and the seed matters."""
    space = load_space()

    def draws(seed):
        rng = np.random.default_rng(seed)  # one generator for all draws: the sequence is what is fixed
        return [space.sample(rng).short_hash() for _ in range(20)]

    a = draws(5)
    assert a == draws(5)
    assert len(set(a)) > 1  # a constant sampler would also repeat itself
    assert a != draws(6)


def test_size_is_the_product_of_choices():
    space = SearchSpace.from_dict(SMALL)
    # per stage: heads 2 x head_dims 2 x depths (1|2) x qk 1 x v 1 x ffn 1 x window 1
    assert space.size() == (2 * 2 * 1) * (2 * 2 * 2) * 2 * 2
    hashes = {
        space.config_from_params(dict(zip([k.name for k in space.knobs()], combo, strict=True))).short_hash()
        for combo in __import__("itertools").product(*[k.choices for k in space.knobs()])
    }
    assert len(hashes) == space.size()


def test_optuna_define_by_run_reconstructs_exact_configs():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space()
    seen = {}

    def objective(trial):
        cfg = space.suggest(trial)
        seen[trial.number] = cfg
        return cfg.widths[-1] / 100 + cfg.depths[-1]

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    study.enqueue_trial(space.params_from_config(PRESETS["M5"]))
    study.optimize(objective, n_trials=15)
    for t in study.trials:
        assert space.config_from_params(t.params) == seen[t.number]
    assert seen[0] == PRESETS["M5"]
    dists = study.trials[-1].distributions
    assert isinstance(dists["head_dim_0"], optuna.distributions.IntDistribution)
    assert dists["head_dim_0"].step == 16
    assert isinstance(dists["v_ratio_1"], optuna.distributions.CategoricalDistribution)


def test_params_outside_the_space_are_rejected():
    space = SearchSpace.from_dict(SMALL)
    with pytest.raises(ConfigError, match=r"outside space|not among"):
        space.params_from_config(ArchConfig(widths=(64, 64), depths=(1, 1), heads=(1, 1), kernels=(5, 3), img_size=64, num_classes=10))
    params = space.params_from_config(
        ArchConfig(
            widths=(32, 32),
            depths=(1, 2),
            heads=(2, 1),
            qk_dims=16,
            v_ratios=1.0,
            ffn_ratios=2.0,
            windows=7,
            kernels=(5, 3),
            img_size=96,
            num_classes=10,
        )
    )
    params["heads_0"] = 3
    with pytest.raises(ConfigError, match="heads_0=3"):
        space.config_from_params(params)
    assert not load_space().contains(PRESETS["M0"].replace(num_classes=10))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kernels": [[5]]}, "heads go up to 2"),
        ({"heads": [1], "head_dims": [12]}, "divisible by 8"),
        ({"v_ratios": [0.3]}, "v_ratios"),
        ({"ffn_ratios": [1.01]}, "ffn_ratios"),
        ({"depths": [[1], [1], [1]]}, "3 per-stage lists"),
        ({"head_dims": []}, "non-empty list"),
        ({"head_dims": [16, 16]}, "duplicate"),
        ({"kernels": [[4, 3]]}, "odd"),
        ({"img_sizes": [8]}, "img_size"),
        ({"widths": [64]}, "unknown search-space key 'widths'"),
        ({"stages": 0}, "stages"),
    ],
)
def test_invalid_spaces_fail_on_load(change, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpace.from_dict({**SMALL, **change})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a bundled space"):
        load_space("no-such-space")
    p = tmp_path / "s.yaml"
    p.write_text("heads: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse search space"):
        load_space(p)
    p.write_text("head_dims: [16]\ndepths: [1]\n")
    with pytest.raises(ConfigError, match="missing required key 'heads'"):
        load_space(p)
