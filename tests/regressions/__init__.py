"""Regression tests for the findings of adversarial reviews (one file per finding)."""
