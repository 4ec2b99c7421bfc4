"""Step 1 of the data path: what an architecture is (:class:`ArchConfig`, the presets) and
where candidates come from (search spaces, YAML files in ``search_spaces/``).
"""
