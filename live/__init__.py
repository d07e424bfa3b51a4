"""netbend's application layer: the `netbend` command line, and (as it grows) the audio,
render, window and OSC threads. Imports ``engine``; ``engine`` never imports this."""
