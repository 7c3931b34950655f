//! `/dev/vscsi0` driven through its ioctls.
//!
//! Every call is one ioctl; the kernel serialises them itself, so there is
//! no state here beyond the descriptor.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libc::{c_int, c_ulong, c_void};

use super::abi::{
    scsi_sense_data, vscsi_ioc_data, vscsi_ioc_devevent, vscsi_ioc_i2t, vscsi_ioc_t2i,
    VSCSI_DATA_READ, VSCSI_DATA_WRITE, VSCSI_I2T, VSCSI_REQDETACH, VSCSI_REQPROBE, VSCSI_T2I,
};
use super::{DevError, Device, Dir, I2t, Status, CDB_MAX, SENSE_LEN};

/// The real vscsi(4) device.
pub struct VscsiDev {
    fd: OwnedFd,
}

impl VscsiDev {
    /// Wraps an open `/dev/vscsi0` descriptor (the parent opens it).
    pub fn new(fd: OwnedFd) -> VscsiDev {
        VscsiDev { fd }
    }

    /// Runs one ioctl, retrying if a signal interrupted it.
    fn ioctl<T>(&self, req: u32, arg: &mut T) -> io::Result<()> {
        loop {
            // SAFETY: `arg` is a live, exclusively borrowed #[repr(C)] struct
            // whose size is the one encoded in `req` (checked in abi.rs), so
            // the kernel reads and writes only memory we own.
            let r = unsafe {
                libc::ioctl(
                    self.fd.as_raw_fd(),
                    c_ulong::from(req),
                    arg as *mut T as *mut c_void,
                )
            };
            if r != -1 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The errno of a data or completion ioctl, named as the driver uses it.
fn map_err(e: io::Error, tag: u32) -> DevError {
    match e.raw_os_error() {
        Some(libc::EFAULT) => DevError::UnknownTag(tag),
        Some(libc::ENOMEM) => DevError::TooMuchData(tag),
        Some(libc::EINVAL) => DevError::WrongDirection(tag),
        _ => DevError::Io(e),
    }
}

/// Tags are C `int`s; the bit pattern travels unchanged both ways.
fn ctag(tag: u32) -> c_int {
    tag as c_int
}

impl Device for VscsiDev {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn i2t(&mut self) -> Result<Option<I2t>, DevError> {
        let mut ioc = vscsi_ioc_i2t::default();
        match self.ioctl(VSCSI_I2T, &mut ioc) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(DevError::Io(e)),
        }
        let mut cdb = [0u8; CDB_MAX];
        cdb[0] = ioc.cmd.opcode;
        cdb[1..].copy_from_slice(&ioc.cmd.bytes);
        let cdblen = u8::try_from(ioc.cmdlen.min(CDB_MAX)).unwrap_or(CDB_MAX as u8);
        let datalen =
            u32::try_from(ioc.datalen).map_err(|_| DevError::Protocol("datalen too large"))?;
        let dir = Dir::from_raw(ioc.direction).ok_or(DevError::Protocol("bad direction"))?;
        Ok(Some(I2t {
            tag: ioc.tag as u32,
            target: ioc.target,
            lun: ioc.lun,
            cdb,
            cdblen,
            datalen,
            dir,
        }))
    }

    fn data_write(&mut self, tag: u32, buf: &mut [u8]) -> Result<(), DevError> {
        let mut ioc = vscsi_ioc_data {
            tag: ctag(tag),
            data: buf.as_mut_ptr().cast(),
            datalen: buf.len(),
        };
        self.ioctl(VSCSI_DATA_WRITE, &mut ioc)
            .map_err(|e| map_err(e, tag))
    }

    fn data_read(&mut self, tag: u32, buf: &[u8]) -> Result<(), DevError> {
        // The kernel only copies in from this pointer; the struct field is
        // not const because one struct serves both directions.
        let mut ioc = vscsi_ioc_data {
            tag: ctag(tag),
            data: buf.as_ptr().cast_mut().cast(),
            datalen: buf.len(),
        };
        self.ioctl(VSCSI_DATA_READ, &mut ioc)
            .map_err(|e| map_err(e, tag))
    }

    fn t2i(&mut self, tag: u32, status: Status, sense: &[u8]) -> Result<(), DevError> {
        let mut raw = [0u8; SENSE_LEN];
        let n = sense.len().min(SENSE_LEN);
        raw[..n].copy_from_slice(&sense[..n]);
        let mut ioc = vscsi_ioc_t2i {
            tag: ctag(tag),
            status: status.raw(),
            sense: sense_from_bytes(&raw),
        };
        self.ioctl(VSCSI_T2I, &mut ioc).map_err(|e| map_err(e, tag))
    }

    fn probe(&mut self, target: i32, lun: i32) -> Result<(), DevError> {
        let mut ioc = vscsi_ioc_devevent { target, lun };
        self.ioctl(VSCSI_REQPROBE, &mut ioc).map_err(DevError::Io)
    }

    fn detach(&mut self, target: i32, lun: i32) -> Result<(), DevError> {
        let mut ioc = vscsi_ioc_devevent { target, lun };
        self.ioctl(VSCSI_REQDETACH, &mut ioc).map_err(DevError::Io)
    }

    fn flush(&mut self) -> Result<(), DevError> {
        Ok(())
    }
}

fn sense_from_bytes(b: &[u8; SENSE_LEN]) -> scsi_sense_data {
    let [error_code, segment, flags, i0, i1, i2, i3, extra_len, c0, c1, c2, c3, add_sense_code, add_sense_code_qual, fru, sense_key_spec_1, sense_key_spec_2, sense_key_spec_3] =
        *b;
    scsi_sense_data {
        error_code,
        segment,
        flags,
        info: [i0, i1, i2, i3],
        extra_len,
        cmd_spec_info: [c0, c1, c2, c3],
        add_sense_code,
        add_sense_code_qual,
        fru,
        sense_key_spec_1,
        sense_key_spec_2,
        sense_key_spec_3,
    }
}
