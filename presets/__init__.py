"""Shipped presets (TOML), found through importlib.resources."""
