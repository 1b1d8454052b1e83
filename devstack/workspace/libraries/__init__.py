"""Cluster libraries: the Libraries API and the per-cluster Python environments behind it."""
