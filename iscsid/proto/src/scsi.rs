//! The core's SCSI vocabulary: a command's data direction, how it ended,
//! and sense data. The engine maps these onto the device's (vscsi(4)'s
//! VSCSI_DIR_* and VSCSI_STAT_*); nothing here knows the device.

/// Which way a command's data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    None,
    Read,
    Write,
}

/// How a command ended, as the kernel needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed with GOOD status.
    Good,
    /// CHECK CONDITION with sense data (fixed format, [`SENSE_LEN`] bytes).
    Sense,
    /// Not done, through no fault of the command (a reset, a lost
    /// connection, a busy target): the midlayer may retry it.
    Retry,
    /// Failed for good.
    Failed,
}

/// Fixed-format sense data as the kernel carries it (SPC-4 4.5.3; the
/// 18-byte `struct scsi_sense_data` of OpenBSD).
pub const SENSE_LEN: usize = 18;

/// Fixed-format sense, current error (SPC-4 4.5.3).
pub const SENSE_FIXED_CURRENT: u8 = 0x70;
/// Additional sense length of an 18-byte fixed-format sense.
const SENSE_FIXED_ADDITIONAL: u8 = (SENSE_LEN - 8) as u8;

/// Sense keys (SPC-4 table 48).
pub const KEY_ILLEGAL_REQUEST: u8 = 0x05;
pub const KEY_UNIT_ATTENTION: u8 = 0x06;

/// Additional sense codes (SPC-4 annex D), with their qualifiers.
pub const ASC_LUN_NOT_SUPPORTED: (u8, u8) = (0x25, 0x00);
pub const ASC_REPORTED_LUNS_CHANGED: (u8, u8) = (0x3f, 0x0e);
/// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (any qualifier).
pub const ASC_RESET_OCCURRED: u8 = 0x29;

/// Fixed-format sense data for a key and additional sense code.
pub fn fixed_sense(key: u8, (asc, ascq): (u8, u8)) -> Vec<u8> {
    let mut s = vec![0u8; SENSE_LEN];
    s[0] = SENSE_FIXED_CURRENT;
    s[2] = key;
    s[7] = SENSE_FIXED_ADDITIONAL;
    s[12] = asc;
    s[13] = ascq;
    s
}
