"""Step 3b: proxy accuracy. Data (no download), short training, zero-cost scores and the
registry the search calls by name.
"""
