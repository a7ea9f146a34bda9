"""Seeded sample-data generator."""
