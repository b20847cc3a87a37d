"""The login-stage classifier on its own (pure text in): escape sequences, priorities, GRUB
errors that the boot gets past and those it does not. The real boots are in
test_debian_boot.py."""

from __future__ import annotations

from diskkit.boottest.classify import Observation, clean_text, evidence_lines, observe_os

GRUB = Observation(None, "bootloader-reached", "grub", (), ready=True)
KERNEL = Observation("kernel-started", None, "grub", ())


def test_escape_sequences_and_carriage_returns_are_dropped() -> None:
    raw = "\x1b[H\x1b[J\x1b[1;1Hhost login: \r\n[\x1b[0;32m  OK  \x1b[0m] Reached\r\n"
    assert clean_text(raw).splitlines() == ["host login: ", "[  OK  ] Reached"]
    assert observe_os(KERNEL, raw, "").outcome == "login"


def test_grub_error_then_kernel_is_not_a_grub_error() -> None:
    console = ("error: no such device: 1234.\r\nLoading Linux 6.1.0\r\n"
               "[    0.000000] Linux version 6.1.0\r\nLoading, please wait...\r\n"
               "ALERT!  UUID=1234 does not exist.  Dropping to a shell!\r\n(initramfs) ")
    o = observe_os(KERNEL, console, "")
    assert (o.outcome, o.stage) == ("initramfs-shell", "initramfs")
    assert "error: no such device: 1234." in o.evidence
    # Before the kernel speaks, the same GRUB error is only provisional.
    first = observe_os(GRUB, "error: no such device: 1234.\r\n", "")
    assert (first.outcome, first.provisional) == (None, "grub-error")


def test_rescue_shell_is_final() -> None:
    o = observe_os(GRUB, "error: unknown filesystem.\r\nEntering rescue mode...\r\n"
                         "grub rescue> ", "")
    assert (o.outcome, o.stage) == ("grub-error", "boot-loader")
    assert evidence_lines("x\nerror: unknown filesystem.\ny") == ("error: unknown filesystem.",)


def test_emergency_and_panic() -> None:
    emergency = ("[  OK  ] Reached target\r\nYou are in emergency mode. After logging in, "
                 "type \"journalctl -xb\"\r\n")
    assert observe_os(KERNEL, emergency, "").outcome == "emergency-mode"
    panic = "[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n"
    assert observe_os(KERNEL, panic, "").outcome == "kernel-panic"
    dracut = "Entering emergency mode. Exit the shell to continue.\r\ndracut:/# "
    assert observe_os(KERNEL, dracut, "").outcome == "dracut-shell"
    # initramfs-tools gives up first, then lists common problems, then says ALERT!: the
    # outcome waits for the ALERT line (the evidence that names the device).
    gave_up = "Gave up waiting for root file system device.  Common problems:\r\n"
    assert observe_os(KERNEL, gave_up, "").outcome is None
    # Nothing decided while the system is still coming up.
    assert observe_os(KERNEL, "Loading, please wait...\r\n", "").outcome is None
