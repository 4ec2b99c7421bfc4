"""Issue 45 item 5: trials of a run killed just before this one are repaired during this run."""

import time

import optuna

from tests.support import by_width, fake_problem_options, fake_proxies


def test_a_dead_runs_trial_is_failed_and_retried_during_the_resumed_run(tmp_path):
    from effvit_nas.arch.space import load_space
    from effvit_nas.search.loop import run_search
    from effvit_nas.search.study import Heartbeat, open_study

    problem, options = fake_problem_options(tmp_path, trials=4)
    handle = open_study(problem, options)
    dead = handle.study.ask()  # a driver that drew a candidate, beat once, then was SIGKILLed
    load_space("tiny").suggest(dead)
    Heartbeat(handle.storage, options.heartbeat_s).assign([handle.trial_id(dead)])
    grace = handle.storage.grace_period
    calls = []

    def measure(config):
        calls.append(config)
        if len(calls) == 1:  # the rerun starts within the grace period and runs past it
            time.sleep(grace + 2 * options.heartbeat_s)
        return by_width(config)

    summary = run_search(problem, options, measure=measure, run_proxies=fake_proxies)
    trials = optuna.load_study(study_name="fake", storage=options.storage).get_trials()
    dead = trials[dead.number]
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL, trials[dead.number].state
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retried and retried[0].params == dead.params and summary.complete == 4
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
