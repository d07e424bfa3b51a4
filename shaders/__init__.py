"""GLSL sources used by live/, found through importlib.resources."""
