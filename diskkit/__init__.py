"""diskkit: inspect, check, diagnose, mount and convert virtual disk images.

The Python API mirrors the command line: open a target with :func:`diskkit.target.open_reader`,
detect its format with :func:`diskkit.formats.detect.detect`, and so on.
"""

__version__ = "0.1.0"
