"""The display: the glfw window (window.py), the GL drawing and HUD (display.py), shader
sources (shaders.py) and the frame upload paths (upload.py)."""
