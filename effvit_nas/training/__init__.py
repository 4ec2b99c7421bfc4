"""Step 6: full training of chosen models with the paper's recipe through Ray Train: the
recipe (what runs), the worker loop, and the runner (how it runs, where results go).
"""
