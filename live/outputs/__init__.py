"""Outputs: the show's picture to other apps and to a file, besides the window.

    framing.py          output size and fit/fill/stretch, smooth/sharp scaling (shared with the window)
    handoff.py          the bounded newest-wins hand-off in front of each output
    output.py           the Output interface and the thread each output runs on
    fanout.py           Outputs: the set the render thread feeds, switched by name
    ndi.py              NDI (cyndilib)
    texture_sharing.py  Syphon (macOS), Spout (Windows)
    virtual_camera.py   a virtual camera (pyvirtualcam)
    recording.py        the show as a crash-safe H.264 MP4 with the input audio
    audio_tap.py        the input audio as an output reads it
    platforms.py        which outputs this platform offers
    options.py          the outputs of `netbend live` as command-line options, checked and built
    commands.py         the outputs' OSC addresses
"""
