"""Proxy fidelity: how well each proxy ranks architectures against a longer reference training
(sampling, stored and resumable evaluation, rank statistics with bootstrap intervals)."""
