"""Ceph RBD: clone chains (:mod:`.chain`, readers level: image facts and findings) and
whole-pool scans (:mod:`.scan`, a service). The reader and its cluster connections are
:mod:`diskkit.readers.rbd` and :mod:`diskkit.readers.rbd_connection`."""
