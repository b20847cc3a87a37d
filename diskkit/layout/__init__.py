"""What is ON a virtual disk: partition tables, filesystems, LVM (read from bytes, nothing
attached). The shared data model is in :mod:`diskkit.layout.model`."""
