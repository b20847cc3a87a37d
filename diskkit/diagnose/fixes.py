"""The fixes diagnose prints: commands a person can paste (openstack, cinder, nova, qemu-img,
grub) and the Glance image properties that matter (hw_firmware_type, hw_machine_type,
hw_disk_bus, hw_cdrom_bus, disk_format). IMAGE, VOLUME, SERVER are placeholders."""

from __future__ import annotations

from diskkit.formats import registry

UEFI_PROPERTIES = "--property hw_firmware_type=uefi --property hw_machine_type=q35"


def _names_backing(qfmt: str) -> bool:
    """True when qemu's ``qfmt`` driver follows a backing file the image names (the
    registry's ``qemu_backing``), which ``qemu-img convert`` would open."""
    info = registry.by_qemu(qfmt)
    return info is not None and info.qemu_backing


def qemu_source(qfmt: str, path: str) -> str:
    """The source arguments of a ``qemu-img convert`` that is safe on a hostile image: for
    formats that can name a backing file, a ``json:`` filename with ``"backing": null`` and the
    ``file`` protocol driver, so qemu opens no file the image names (the guest then loses
    what a backing file held, which a hostile image must not get anyway)."""
    if _names_backing(qfmt):
        return ("'json:{\"driver\": \"" + qfmt + "\", \"backing\": null, \"file\": "
                "{\"driver\": \"file\", \"filename\": \"" + path + "\"}}'")
    return f"-f {qfmt} {path}"


def container_as_raw(fmt: str) -> str:
    """qcow2/VMDK/... bytes sent as raw."""
    info = registry.lookup(fmt)
    qfmt = info.qemu if info is not None and info.qemu else fmt
    return (f"convert it and upload the result as raw: qemu-img convert -O raw "
            f"{qemu_source(qfmt, f'IMAGE.{fmt}')} IMAGE.raw"
            + (" (this form opens no backing file the image names)"
               if _names_backing(qfmt) else "")
            + " && openstack image create --disk-format raw "
            "--container-format bare --file IMAGE.raw NAME (or upload the original with "
            f"--disk-format {fmt}); then create the volume again from it: openstack volume "
            "create --image NAME --size GB VOLUME")


def compressed(fmt: str) -> str:
    """A gzip/xz/... file sent as a disk."""
    info = registry.lookup(fmt)
    tool = (info.unpack.replace("FILE", f"IMAGE.{info.extension}")
            if info is not None and info.unpack else "unpack it")
    return (f"decompress before upload ({tool}), check the disk inside (diskkit check IMAGE "
            "--disk-format raw), then openstack image create --disk-format raw --file IMAGE "
            "NAME and recreate the volume from it")


def archive(fmt: str) -> str:
    """A tar/OVA/zip sent as a disk."""
    return (f"unpack the {fmt} (tar -xf / unzip) and upload the disk inside with its own "
            "format (qemu-img convert -O raw DISK.vmdk DISK.raw for an OVA's VMDK)")


BLANK = ("write an image onto the volume: openstack volume create --image IMAGE --size GB "
         "VOLUME (or qemu-img convert -O raw IMAGE rbd:POOL/VOLUME on a Ceph host); if the OS "
         "is on another volume, boot from that one (boot_index=0)")

ISO_AS_DISK = ("boot the ISO as a CD-ROM, not as a disk: openstack server create --image ISO "
               "--block-device source=blank,destination_type=volume,volume_size=GB "
               "... (Nova attaches an image with disk_format=iso as a cdrom; set "
               "hw_cdrom_bus=sata with hw_machine_type=q35, or ide), or attach this volume "
               "with --block-device uuid=VOLUME,source_type=volume,destination_type=volume,"
               "device_type=cdrom,boot_index=0; or use a hybrid ISO (xorriso -isohybrid-mbr)")

UEFI_ONLY = ("boot it with UEFI firmware: openstack image set " + UEFI_PROPERTIES + " IMAGE "
             "(for an existing volume: openstack volume set --image-property "
             "hw_firmware_type=uefi --image-property hw_machine_type=q35 VOLUME); or install "
             "GRUB for BIOS too (a BIOS boot partition + grub-install --target=i386-pc)")

BIOS_ONLY = ("boot it with BIOS firmware: openstack image unset --property hw_firmware_type "
             "IMAGE (or --property hw_firmware_type=bios); or install a UEFI loader in the "
             "guest: grub-install --target=x86_64-efi --removable")

NO_BOOT_CODE = ("install a boot loader onto this disk (from a rescue system: grub-install "
                "/dev/vda && update-grub); if the boot loader is on another volume, make the "
                "volume that holds it boot_index=0 (SeaBIOS tries only the first disk)")

NO_SIGNATURE = ("this volume does not hold a BIOS-bootable disk: write a disk image onto it, "
                "or boot the volume that holds the OS (boot_index=0)")

CDROM = ("rebuild the ISO with a BIOS El Torito boot image (xorriso -as mkisofs -b "
         "isolinux/isolinux.bin -no-emul-boot -boot-load-size 4 -boot-info-table), or boot "
         "it with UEFI (" + UEFI_PROPERTIES + ")")

WINDOWS_VIRTIO = ("if Windows then stops with INACCESSIBLE_BOOT_DEVICE, it lacks the virtio "
                  "drivers: openstack image set --property hw_disk_bus=sata IMAGE (or ide), "
                  "or inject viostor")
