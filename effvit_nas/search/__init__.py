"""Step 4: the study. What a study is about (problem), how a run goes (options), the typed
trial record, the screening decisions and the loop that asks Optuna, screens, runs proxies
and finishes trials.
"""
