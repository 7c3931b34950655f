//! The vscsi(4) ioctl ABI: `sys/dev/vscsivar.h` and the parts of
//! `sys/scsi/scsi_all.h` it embeds.
//!
//! Compiled on every platform so the layout assertions and the ioctl
//! numbers are checked by the Linux build and tests too, not only by the
//! cross-check for OpenBSD.
#![allow(non_camel_case_types)]

use core::mem::size_of;
use libc::{c_int, c_uint, c_void, size_t};

/// `struct scsi_generic`: the CDB as the kernel stores it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct scsi_generic {
    pub opcode: u8,
    pub bytes: [u8; 15],
}

/// `struct scsi_sense_data` as of scsi_all.h 1.65 (18 bytes). Older
/// kernels had 14 more bytes, which changes `VSCSI_T2I`; we follow current.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct scsi_sense_data {
    pub error_code: u8,
    pub segment: u8,
    pub flags: u8,
    pub info: [u8; 4],
    pub extra_len: u8,
    pub cmd_spec_info: [u8; 4],
    pub add_sense_code: u8,
    pub add_sense_code_qual: u8,
    pub fru: u8,
    pub sense_key_spec_1: u8,
    pub sense_key_spec_2: u8,
    pub sense_key_spec_3: u8,
}

/// `struct vscsi_ioc_i2t`: a command handed from the kernel to userland.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct vscsi_ioc_i2t {
    pub tag: c_int,
    pub target: c_uint,
    pub lun: c_uint,
    pub cmd: scsi_generic,
    pub cmdlen: size_t,
    pub datalen: size_t,
    pub direction: c_int,
}

/// `struct vscsi_ioc_data`: one sequential piece of a data phase.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vscsi_ioc_data {
    pub tag: c_int,
    pub data: *mut c_void,
    pub datalen: size_t,
}

/// `struct vscsi_ioc_t2i`: a completion from userland.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct vscsi_ioc_t2i {
    pub tag: c_int,
    pub status: c_int,
    pub sense: scsi_sense_data,
}

/// `struct vscsi_ioc_devevent`. The man page says `u_int`; the header
/// says `int`, and -1 is the wildcard.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct vscsi_ioc_devevent {
    pub target: c_int,
    pub lun: c_int,
}

pub const VSCSI_DIR_NONE: c_int = 0;
pub const VSCSI_DIR_READ: c_int = 1;
pub const VSCSI_DIR_WRITE: c_int = 2;

pub const VSCSI_STAT_DONE: c_int = 0;
pub const VSCSI_STAT_SENSE: c_int = 1;
pub const VSCSI_STAT_RESET: c_int = 2;
pub const VSCSI_STAT_ERR: c_int = 3;

// <sys/ioccom.h>
const IOCPARM_MASK: u32 = 0x1fff;
const IOC_OUT: u32 = 0x4000_0000;
const IOC_IN: u32 = 0x8000_0000;

/// BSD `_IOC(inout, group, num, len)`. The length is masked as the C macro
/// masks it, so an oversized struct cannot spill into the direction bits.
pub const fn ioc(inout: u32, group: u8, num: u8, len: usize) -> u32 {
    inout | (((len as u32) & IOCPARM_MASK) << 16) | ((group as u32) << 8) | num as u32
}

/// BSD `_IOR`: the kernel copies the struct out to userland.
pub const fn ior(group: u8, num: u8, len: usize) -> u32 {
    ioc(IOC_OUT, group, num, len)
}

/// BSD `_IOW`: the kernel copies the struct in from userland.
pub const fn iow(group: u8, num: u8, len: usize) -> u32 {
    ioc(IOC_IN, group, num, len)
}

pub const VSCSI_I2T: u32 = ior(b'I', 0, size_of::<vscsi_ioc_i2t>());
pub const VSCSI_DATA_READ: u32 = iow(b'I', 1, size_of::<vscsi_ioc_data>());
pub const VSCSI_DATA_WRITE: u32 = iow(b'I', 2, size_of::<vscsi_ioc_data>());
pub const VSCSI_T2I: u32 = iow(b'I', 3, size_of::<vscsi_ioc_t2i>());
pub const VSCSI_REQPROBE: u32 = iow(b'I', 4, size_of::<vscsi_ioc_devevent>());
pub const VSCSI_REQDETACH: u32 = iow(b'I', 5, size_of::<vscsi_ioc_devevent>());

// The documented amd64 layouts (openbsd-iscsid.md section 2.1). A mismatch
// here would make every ioctl read or write the wrong bytes.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::offset_of;

    assert!(size_of::<scsi_generic>() == 16);
    assert!(size_of::<scsi_sense_data>() == 18);
    assert!(offset_of!(scsi_sense_data, extra_len) == 7);
    assert!(offset_of!(scsi_sense_data, add_sense_code) == 12);
    assert!(offset_of!(scsi_sense_data, add_sense_code_qual) == 13);
    assert!(offset_of!(scsi_sense_data, sense_key_spec_3) == 17);

    assert!(size_of::<vscsi_ioc_i2t>() == 56);
    assert!(offset_of!(vscsi_ioc_i2t, tag) == 0);
    assert!(offset_of!(vscsi_ioc_i2t, target) == 4);
    assert!(offset_of!(vscsi_ioc_i2t, lun) == 8);
    assert!(offset_of!(vscsi_ioc_i2t, cmd) == 12);
    assert!(offset_of!(vscsi_ioc_i2t, cmdlen) == 32);
    assert!(offset_of!(vscsi_ioc_i2t, datalen) == 40);
    assert!(offset_of!(vscsi_ioc_i2t, direction) == 48);

    assert!(size_of::<vscsi_ioc_data>() == 24);
    assert!(offset_of!(vscsi_ioc_data, tag) == 0);
    assert!(offset_of!(vscsi_ioc_data, data) == 8);
    assert!(offset_of!(vscsi_ioc_data, datalen) == 16);

    assert!(size_of::<vscsi_ioc_t2i>() == 28);
    assert!(offset_of!(vscsi_ioc_t2i, tag) == 0);
    assert!(offset_of!(vscsi_ioc_t2i, status) == 4);
    assert!(offset_of!(vscsi_ioc_t2i, sense) == 8);

    assert!(size_of::<vscsi_ioc_devevent>() == 8);
    assert!(offset_of!(vscsi_ioc_devevent, target) == 0);
    assert!(offset_of!(vscsi_ioc_devevent, lun) == 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn ioctl_numbers_match_amd64() {
        assert_eq!(VSCSI_I2T, 0x4038_4900);
        assert_eq!(VSCSI_DATA_READ, 0x8018_4901);
        assert_eq!(VSCSI_DATA_WRITE, 0x8018_4902);
        assert_eq!(VSCSI_T2I, 0x801c_4903);
        assert_eq!(VSCSI_REQPROBE, 0x8008_4904);
        assert_eq!(VSCSI_REQDETACH, 0x8008_4905);
    }

    #[test]
    fn ioc_encoding() {
        // The old 32-byte sense made T2I 40 bytes long.
        assert_eq!(iow(b'I', 3, 40), 0x8028_4903);
        // Lengths wider than 13 bits are masked, as in <sys/ioccom.h>.
        assert_eq!(ior(b'I', 0, 0x2000 + 8), 0x4008_4900);
        assert_eq!(ioc(0, 0xff, 0xff, 0), 0x0000_ffff);
    }

    #[test]
    fn status_and_direction_values_match_mod() {
        use crate::vscsi::{Dir, Status};
        assert_eq!(Dir::Read.raw(), VSCSI_DIR_READ);
        assert_eq!(Dir::Write.raw(), VSCSI_DIR_WRITE);
        assert_eq!(Dir::None.raw(), VSCSI_DIR_NONE);
        assert_eq!(Status::Done.raw(), VSCSI_STAT_DONE);
        assert_eq!(Status::Sense.raw(), VSCSI_STAT_SENSE);
        assert_eq!(Status::Reset.raw(), VSCSI_STAT_RESET);
        assert_eq!(Status::Err.raw(), VSCSI_STAT_ERR);
    }
}
