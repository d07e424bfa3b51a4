import pytest
import torch

torch.set_num_threads(1)  # CI has 2 cores; two torch threads stall each other whenever anything else runs


@pytest.fixture(scope="session")
def tiny():
    """The random-weight tiny model, built once per test session (read-only by convention:
    tests that bend it use their own Bender and remove it)."""
    from engine.tiny import tiny_model

    return tiny_model(seed=0)
