"""netbend's engine: pure computation. Operators, bends, models, samplers, audio features,
mappings. No threads, no devices opened, no windows, no sockets; never imports ``live``."""
from .bends import LATENT, Bend, apply_bend
from .operators import OPERATORS, get_operator
from .targets import Target, parse_target

__all__ = ["LATENT", "Bend", "apply_bend", "OPERATORS", "get_operator", "Target", "parse_target"]
