"""Control of the show: the command vocabulary and state (state.py), OSC, presets and
their files, rehearsal takes. Every change is a Command on one queue."""
