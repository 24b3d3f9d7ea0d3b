"""Foundations every stage shares: typed config, errors, atomic writes."""
