"""The contract suites reuse the attach/mount tests' images and their leak check."""

from tests.backends.conftest import disk_images, run_dir  # noqa: F401 (fixtures)
