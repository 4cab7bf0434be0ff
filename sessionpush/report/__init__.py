"""Measurement: per-rule outcomes, holdout lift and "why (not) sent".

Reports are computed from what the store already records (decisions, goal
events and delivery outcomes), so that the embedded and the Redis store
answer the same questions without a schema of their own.
"""
