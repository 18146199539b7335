"""The notifier stage."""
