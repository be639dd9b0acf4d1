"""`kptoolkit bench`: train and score variants and baselines under one budget, then tabulate."""
