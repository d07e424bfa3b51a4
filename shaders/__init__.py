"""GLSL sources used by live/, found through importlib.resources (live/display/shaders.py):
display.glsl, the frame (with CROSSFADE defined, mixed from the previous one), and hud.glsl."""
