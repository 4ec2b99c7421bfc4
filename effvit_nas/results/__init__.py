"""Step 5: reading studies: trial tables, the Pareto set, the M0-M5 references, plots and
exported model folders.
"""
