"""What is ON a virtual disk: partition tables, filesystems, LVM (read from bytes, nothing
attached). The shared data model is in :mod:`diskkit.layout.model`.

Public API::

    inspect_layout(reader) -> Layout
    partition_reader(reader, partition) -> Reader
    lv_reader(reader, layout, "vg/lv") -> Reader
"""

from diskkit.layout.inspect import (
    ConcatReader,
    Layout,
    inspect_layout,
    lv_reader,
    partition_reader,
)
from diskkit.layout.model import Filesystem, Partition

__all__ = [
    "ConcatReader",
    "Filesystem",
    "Layout",
    "Partition",
    "inspect_layout",
    "lv_reader",
    "partition_reader",
]
