"""Helpers shared by research/, experiments/ and analysis/, importing the standard library only
(tests/test_layering.py checks it): atomic writes, provenance, the results-table schema.

analysis/ must stay usable without JAX and without research/ (a law fitted to someone else's
table), so what both sides need lives here rather than in research/.
"""
