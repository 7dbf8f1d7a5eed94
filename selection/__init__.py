"""Subset construction and scheduling: pure functions over Arrow tables and NumPy arrays."""
