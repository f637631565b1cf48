"""Naive Lambda handlers that import the minimum each job needs: the cold-start baselines."""
