"""A search on the predictors only: Optuna's NSGA-II over the space, both objectives predicted
(throughput from a target's :class:`EfficiencyPredictor`, accuracy from any accuracy
predictor), nothing measured or trained. What it returns is a shortlist to measure for real:
the predicted front and every candidate the front does not beat by more than the predictors'
error (its optimistic throughput, the top of its interval, plus an accuracy margin).

Each architecture's features are computed once, by arithmetic (:mod:`effvit_nas.predict.analytic`,
equal to the built model's; NSGA-II draws the same architecture again and again as the
population converges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import SearchSpace
from effvit_nas.errors import SettingError
from effvit_nas.predict.analytic import analytic_features
from effvit_nas.predict.efficiency import EfficiencyPredictor, Prediction
from effvit_nas.runtime import quiet_optuna
from effvit_nas.trials.pareto import front_points, hypervolume_2d, on_front

# NSGA-II generations per Optuna study: Optuna's GA bookkeeping scans every finished trial of the
# study at each new trial, so one study of 10,000 trials costs ~110 s, almost all of it that scan;
# studies of GENERATIONS_PER_STUDY generations, each seeded with the previous one's parent
# population (what NSGA-II would breed the next generation from), keep it linear
GENERATIONS_PER_STUDY = 40


@dataclass(frozen=True)
class Candidate:
    """A predicted point: throughput with its interval (img/s) and predicted accuracy."""

    config: ArchConfig
    throughput: Prediction
    accuracy: float
    on_front: bool


def _beats(a: Candidate, b: Candidate, throughput: float, accuracy: float) -> bool:
    """Whether ``a``'s prediction dominates ``b`` taken at ``(throughput, accuracy)``."""
    ta = a.throughput.throughput
    return ta >= throughput and a.accuracy >= accuracy and (ta > throughput or a.accuracy > accuracy)


def shortlist(candidates: list[Candidate], accuracy_margin: float) -> list[Candidate]:
    """The front (predicted values) and every candidate no front member dominates once the
    candidate is taken at its optimistic throughput and accuracy + ``accuracy_margin``."""
    front = [c for c in candidates if c.on_front]
    near = [
        c for c in candidates if not c.on_front and not any(_beats(f, c, c.throughput.high, c.accuracy + accuracy_margin) for f in front)
    ]
    return front + near


def by_gain(candidates: list[Candidate], measured: list[tuple[float, float]], budget: float, n: int) -> list[Candidate]:
    """``candidates`` reordered so that the first ``n`` are a greedy hypervolume choice: each
    next one adds the most predicted area, in (accuracy, throughput), to the ``measured`` points
    and the ones chosen before it. The area's reference is the ``budget`` (images/s) and the
    lowest accuracy of all the points, so that no proxy's scale or sign matters. Candidates
    that add nothing keep their order after the chosen ones.

    Why: a predicted front holds hundreds of architectures and a round measures a few; taken
    in the order NSGA-II found them, the first few crowd wherever its first generations landed.
    """

    def point(c: Candidate) -> tuple[float, float]:
        return c.accuracy, c.throughput.throughput

    if not candidates:
        return []
    # just below the lowest accuracy: hypervolume_2d counts only points strictly above the reference
    ref = (min([a for a, _ in measured] + [c.accuracy for c in candidates]) - 1e-12, budget)
    chosen: list[Candidate] = []
    taken = front_points(measured)  # the same area, fewer points to add up
    rest = list(candidates)
    base = hypervolume_2d(taken, ref)
    while rest and len(chosen) < n:
        gains = [hypervolume_2d([*taken, point(c)], ref) - base for c in rest]
        best = max(range(len(rest)), key=gains.__getitem__)
        if gains[best] <= 0:
            break
        c = rest.pop(best)
        chosen.append(c)
        taken = front_points([*taken, point(c)])
        base += gains[best]
    return chosen + rest


def predicted_search(
    space: SearchSpace,
    efficiency: EfficiencyPredictor,
    accuracy: Callable[[ArchConfig], float],
    trials: int,
    seed: int = 0,
    population: int = 50,
) -> list[Candidate]:
    """Every distinct architecture NSGA-II evaluated in ``trials`` trials (over studies of
    ``GENERATIONS_PER_STUDY`` generations of ``population``), the predicted Pareto front (max
    throughput, max accuracy) over all of them marked."""
    import optuna  # lazy: Optuna costs a second to import

    if trials < 1:
        raise SettingError("predicted_search.trials", f"must be >= 1, got {trials}")
    seen: dict[str, Candidate] = {}

    def objective(trial) -> tuple[float, float]:
        cfg = space.suggest(trial)
        h = cfg.short_hash()
        if h not in seen:
            seen[h] = Candidate(cfg, efficiency.predict(analytic_features(cfg)), float(accuracy(cfg)), False)
        trial.set_user_attr("hash", h)
        return seen[h].throughput.throughput, seen[h].accuracy

    parents: list[dict] = []
    done, leg = 0, 0
    with quiet_optuna():
        while done < trials:
            # seed * 1000: a later round's seed + 1 must not replay this round's later legs
            sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed * 1000 + leg)
            study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
            for p in parents:
                study.enqueue_trial(p)
            n = min(population * GENERATIONS_PER_STUDY, trials - done)
            study.optimize(objective, n_trials=n)
            last = sampler.get_trial_generation(study, study.trials[-1])
            parents = [t.params for t in sampler.get_parent_population(study, last + 1)]
            done, leg = done + n, leg + 1
    front = {c.config.short_hash() for c in on_front(list(seen.values()), lambda c: (c.throughput.throughput, c.accuracy))}
    return [Candidate(c.config, c.throughput, c.accuracy, h in front) for h, c in seen.items()]
