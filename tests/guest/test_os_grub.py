"""GRUB configuration: grub.cfg written by GRUB's own grub.d scripts (what grub-mkconfig runs),
grubenv written by grub-editenv, BLS entries, /etc/default/grub with grub.d/*.cfg."""

from __future__ import annotations

import pathlib

from diskkit.guest import bootcfg
from diskkit.guest.inspect import read_boot
from diskkit.guest.tree import TreeFS
from tests.guest.os_build import grub_editenv, grub_mkconfig, host_kernel, write

CMDLINE = "console=ttyS0,115200n8 net.ifnames=0"


def test_grub_mkconfig_entries_and_default() -> None:
    kver = host_kernel()
    cfg = grub_mkconfig({"GRUB_DEVICE": "/dev/vda1", "GRUB_CMDLINE_LINUX": CMDLINE,
                         "GRUB_CMDLINE_LINUX_DEFAULT": "quiet", "GRUB_DEFAULT": "0"})
    g = bootcfg.parse_grub_cfg(cfg, "/boot/grub/grub.cfg")
    # the simple entry, then the advanced submenu with the normal and recovery entries
    assert [e.index for e in g.entries] == ["0", "1>0", "1>1"]
    first = g.entries[0]
    assert first.kernel == f"/boot/vmlinuz-{kver}"
    assert first.initrd == (f"/boot/initrd.img-{kver}",)
    assert first.cmdline == f"root=/dev/vda1 ro {CMDLINE} quiet"
    assert "single" in (g.entries[2].cmdline or "")
    assert g.entries[1].submenu == ("Advanced options for Debian GNU/Linux",)
    assert g.default == "0" and g.default_entry is first
    assert g.default_source and g.default_source.text == 'set default="0"'
    assert first.source and first.source.text and first.source.text.startswith("menuentry")


def test_saved_default_from_grubenv(tmp_path: pathlib.Path) -> None:
    """GRUB_DEFAULT=saved: grub.cfg says ${saved_entry}; grubenv (grub-editenv) names it."""
    cfg = grub_mkconfig({"GRUB_DEVICE": "/dev/vda1", "GRUB_DEFAULT": "saved",
                         "GRUB_CMDLINE_LINUX": CMDLINE})
    probe = bootcfg.parse_grub_cfg(cfg, "grub.cfg")
    target = probe.entries[2]
    env_file = grub_editenv(tmp_path / "grubenv", saved_entry=str(target.id))
    env = bootcfg.parse_grubenv(env_file.read_bytes())
    assert env["saved_entry"] == target.id
    g = bootcfg.parse_grub_cfg(cfg, "grub.cfg", env)
    assert g.default == "${saved_entry}"
    assert g.default_entry == target
    # a submenu path by titles, as `grub-reboot 'Advanced...>Debian..., with Linux ...'` sets
    path = ">".join([*target.submenu, target.title])
    g2 = bootcfg.parse_grub_cfg(cfg, "grub.cfg", {"saved_entry": path})
    assert g2.default_entry == target
    g3 = bootcfg.parse_grub_cfg(cfg, "grub.cfg", {"saved_entry": "1>0"})
    assert g3.default_entry == probe.entries[1]


def test_lexer_quotes_semicolons_and_search() -> None:
    text = (
        "set root='hd0,msdos1'; search --no-floppy --fs-uuid --set=root 1234-ABCD\n"
        "set extra=\"console=tty0\"\n"
        "menuentry \"It's \\\"quoted\\\"\" --id e1 {\n"
        "  linux /vmlinuz root=UUID=u1 $extra 'lit$eral' ; initrd /i1 /i2\n"
        "}\n"
        "menuentry 'two' { linux16 /k2 ro }\n"
        "set default=e1\n")
    g = bootcfg.parse_grub_cfg(text, "x")
    assert [e.title for e in g.entries] == ['It\'s "quoted"', "two"]
    assert g.entries[0].cmdline == "root=UUID=u1 console=tty0 lit$eral"
    assert g.entries[0].initrd == ("/i1", "/i2")
    assert g.entries[1].kernel == "/k2"
    assert g.default_entry == g.entries[0]
    assert g.searches[0][:2] == ("fs-uuid", "1234-ABCD")


def test_bls_and_kernelopts(tmp_path: pathlib.Path) -> None:
    """RHEL 8 style: grub.cfg runs blscfg, entries in /boot/loader/entries, $kernelopts from
    grubenv, saved_entry picks the entry."""
    root = tmp_path / "r"
    write(root, "boot/grub2/grub.cfg", "load_env -f ${config_directory}/grubenv\n"
          "set default=\"${saved_entry}\"\ninsmod blscfg\nblscfg\n")
    grub_editenv(root / "boot/grub2/grubenv", saved_entry="abc-4.18.0-553.el8.x86_64",
                 kernelopts="root=/dev/mapper/rhel-root ro crashkernel=auto console=ttyS0")
    for v in ("4.18.0-553.el8.x86_64", "4.18.0-80.el8.x86_64"):
        write(root, f"boot/loader/entries/abc-{v}.conf",
              f"title Red Hat Enterprise Linux ({v}) 8\nversion {v}\nlinux /vmlinuz-{v}\n"
              f"initrd /initramfs-{v}.img $tuned_initrd\noptions $kernelopts $tuned_params\n"
              "id rhel-20240101-" + v + "\ngrub_users $grub_users\ngrub_class kernel\n")
    with TreeFS(root) as fs:
        boot = read_boot(fs, boot_separate=False)
    assert boot.grub and boot.grub.uses_bls
    assert [e.id for e in boot.bls] == ["abc-4.18.0-553.el8.x86_64", "abc-4.18.0-80.el8.x86_64"]
    d = boot.default_entry
    assert d is not None and d.id == "abc-4.18.0-553.el8.x86_64"
    assert d.cmdline == "root=/dev/mapper/rhel-root ro crashkernel=auto console=ttyS0"
    assert d.kernel == "/vmlinuz-4.18.0-553.el8.x86_64"
    assert d.source and d.source.line == 3


def test_default_grub_and_dropins(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "r"
    write(root, "etc/default/grub", 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n'
          'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n')
    write(root, "etc/default/grub.d/50-cloud.cfg",
          '# cloud\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=tty0 console=ttyS0,115200"\n'
          "GRUB_TERMINAL='serial console'\n")
    with TreeFS(root) as fs:
        dg = bootcfg.read_default_grub(fs)
    assert dg is not None
    assert dg.values["GRUB_CMDLINE_LINUX"] == " console=tty0 console=ttyS0,115200"
    assert dg.cmdline == "console=tty0 console=ttyS0,115200 quiet"
    assert dg.values["GRUB_TERMINAL"] == "serial console"
    src = dg.sources["GRUB_CMDLINE_LINUX"]
    assert src.path == "/etc/default/grub.d/50-cloud.cfg" and src.line == 2


def test_bounds_on_hostile_config() -> None:
    text = "submenu a {\n" * 50 + "menuentry x { linux /k }\n" + "}\n" * 50
    g = bootcfg.parse_grub_cfg(text, "x")
    assert g.entries == ()  # nested deeper than the bound: not followed
    many = "menuentry e { linux /k }\n" * (bootcfg.MAX_ENTRIES + 50)
    assert len(bootcfg.parse_grub_cfg(many, "x").entries) == bootcfg.MAX_ENTRIES
    assert bootcfg.parse_grubenv(b"not an env") == {}
