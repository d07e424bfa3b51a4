"""The show: the render loop and its commands (show.py), the wiring of `netbend live`
(app.py), the preset crossfade, the stats and HUD text, and the one-slot mailbox to the display."""
