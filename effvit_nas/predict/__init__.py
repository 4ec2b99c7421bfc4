"""Predictors fitted once per target and reused: efficiency (measured throughput) from analytic
per-operator costs, accuracy from what a study already scored."""
