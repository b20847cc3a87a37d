"""Every boot these tests start runs under TCG (Linux guests hang under KVM on these
machines, and SeaBIOS stalls there): no KVM probe, same behaviour everywhere."""

import os

os.environ["DISKKIT_ACCEL"] = "tcg"
