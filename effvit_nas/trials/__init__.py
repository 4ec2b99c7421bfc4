"""Below both the search and the results: a study's trials as typed records and their Pareto set
(what the search writes and every reader reads)."""
