"""The router stage."""
