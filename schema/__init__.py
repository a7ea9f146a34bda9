"""Curated schema, generated from models/features.py."""
