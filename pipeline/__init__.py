"""Tocsin package."""
