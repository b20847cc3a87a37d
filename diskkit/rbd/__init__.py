"""Ceph RBD: connections to a cluster (:mod:`.connection`), clone chains (:mod:`.chain`) and
whole-pool scans (:mod:`.scan`). The reader itself is :mod:`diskkit.readers.rbd`."""
