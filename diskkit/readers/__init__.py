"""Readers of bytes: the guest-visible disk of an image, or the raw bytes of a file.

Every reader implements :class:`diskkit.readers.base.Reader`: a size, ``read(offset, length)``
and ``extents()`` (which ranges hold data, so checks read only what exists).
"""

from diskkit.readers.base import BytesReader, Extent, Reader, SliceReader

__all__ = ["BytesReader", "Extent", "Reader", "SliceReader"]
