"""Audio in: a sound card (input.py) or a file (filesource.py) to timestamped feature
frames (features.py); device lookup (devices.py) and the shared gain and gate (gain.py)."""
