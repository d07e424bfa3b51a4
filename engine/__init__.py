"""netbend's engine: pure computation. Operators, bends, models, samplers, audio features,
mappings. No threads, no devices opened, no windows, no sockets; never imports ``live``."""
# The operator files register into engine.operators.OPERATORS when imported; importing them
# here, the one place every "import engine.…" passes, means the registry is always complete.
from . import published_operators, spatial_operators, value_operators  # noqa: F401
from .bends import LATENT, Bend, apply_bend
from .operators import OPERATORS, get_operator
from .targets import Target, parse_target

__all__ = ["LATENT", "Bend", "apply_bend", "OPERATORS", "get_operator", "Target", "parse_target"]
