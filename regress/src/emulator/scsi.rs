//! SCSI command blocks and replies the emulator's midlayer and sd(4) use
//! (SPC-4, SBC-3), plus sense accessors. Builders return fixed arrays;
//! parsers take whatever the target sent and return `None` when it is too
//! short, never panicking.

pub const TEST_UNIT_READY: u8 = 0x00;
pub const INQUIRY: u8 = 0x12;
pub const READ_CAPACITY_10: u8 = 0x25;
pub const READ_10: u8 = 0x28;
pub const WRITE_10: u8 = 0x2a;
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
pub const READ_16: u8 = 0x88;
pub const WRITE_16: u8 = 0x8a;
pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
pub const SAI_READ_CAPACITY_16: u8 = 0x10;
pub const REPORT_LUNS: u8 = 0xa0;

/// Sense keys.
pub const SKEY_NO_SENSE: u8 = 0x0;
pub const SKEY_RECOVERED_ERROR: u8 = 0x1;
pub const SKEY_NOT_READY: u8 = 0x2;
pub const SKEY_MEDIUM_ERROR: u8 = 0x3;
pub const SKEY_HARDWARE_ERROR: u8 = 0x4;
pub const SKEY_ILLEGAL_REQUEST: u8 = 0x5;
pub const SKEY_UNIT_ATTENTION: u8 = 0x6;
pub const SKEY_DATA_PROTECT: u8 = 0x7;
pub const SKEY_ABORTED_COMMAND: u8 = 0xb;

/// Peripheral device types.
pub const T_DIRECT: u8 = 0x00;
pub const T_STORARRAY: u8 = 0x0c;
pub const T_NODEVICE: u8 = 0x1f;

/// INQUIRY standard data up to the revision field.
pub const INQUIRY_LEN: usize = 36;
/// INQUIRY byte 7: command queueing (tags) supported.
pub const SID_CMDQUE: u8 = 0x02;
/// `SCSI_REV_2`: below it (SCSI-1 and older) the midlayer never tags.
const SCSI_REV_2: u8 = 2;
/// `struct scsi_report_luns_data`: 8-byte header and 256 entries.
pub const REPORT_LUNS_LEN: u32 = 8 + 256 * 8;
/// READ CAPACITY(16) parameter data length sd(4) asks for.
pub const READ_CAPACITY_16_LEN: u32 = 32;

pub fn test_unit_ready() -> [u8; 6] {
    [TEST_UNIT_READY, 0, 0, 0, 0, 0]
}

/// Standard INQUIRY (EVPD 0) for `alloc` bytes.
pub fn inquiry(alloc: u16) -> [u8; 6] {
    let [hi, lo] = alloc.to_be_bytes();
    [INQUIRY, 0, 0, hi, lo, 0]
}

pub fn read_capacity_10() -> [u8; 10] {
    [READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

pub fn read_capacity_16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = SERVICE_ACTION_IN_16;
    c[1] = SAI_READ_CAPACITY_16;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// REPORT LUNS with SELECT REPORT `select` (0: the normal list).
pub fn report_luns(select: u8, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = REPORT_LUNS;
    c[2] = select;
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn read_10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(READ_10, lba, blocks)
}

pub fn write_10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(WRITE_10, lba, blocks)
}

pub fn read_16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(READ_16, lba, blocks)
}

pub fn write_16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(WRITE_16, lba, blocks)
}

/// SYNCHRONIZE CACHE(10) for the whole medium (LBA 0, 0 blocks).
pub fn synchronize_cache_10() -> [u8; 10] {
    [SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The READ/WRITE (10)/(16) CDB that moves `blocks` at `lba`: 10-byte when
/// it fits (LBA and end below 2^32, at most 65535 blocks), else 16-byte.
pub fn rw_cdb(write: bool, lba: u64, blocks: u32) -> Vec<u8> {
    let end = lba.checked_add(u64::from(blocks));
    match (u32::try_from(lba), u16::try_from(blocks), end) {
        (Ok(l), Ok(b), Some(e)) if e <= 1 << 32 => {
            if write {
                write_10(l, b).to_vec()
            } else {
                read_10(l, b).to_vec()
            }
        }
        _ if write => write_16(lba, blocks).to_vec(),
        _ => read_16(lba, blocks).to_vec(),
    }
}

/// A READ or WRITE (10)/(16) CDB decoded, for test targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rw {
    pub write: bool,
    pub lba: u64,
    pub blocks: u32,
}

pub fn parse_rw(cdb: &[u8]) -> Option<Rw> {
    let be = |r: core::ops::Range<usize>| {
        cdb.get(r)
            .map(|b| b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    };
    let (write, lba, blocks) = match *cdb.first()? {
        READ_10 | WRITE_10 if cdb.len() >= 10 => (cdb[0] == WRITE_10, be(2..6)?, be(7..9)?),
        READ_16 | WRITE_16 if cdb.len() >= 16 => (cdb[0] == WRITE_16, be(2..10)?, be(10..14)?),
        _ => return None,
    };
    Some(Rw {
        write,
        lba,
        blocks: u32::try_from(blocks).ok()?,
    })
}

/// The parts of standard INQUIRY data the midlayer looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    pub qualifier: u8,
    pub device_type: u8,
    pub removable: bool,
    /// `SID_ANSII_REV`: 3 is SPC, 4..=7 SPC-2..SPC-5.
    pub version: u8,
    /// `SID_CmdQue`: the LUN takes tagged (queued) commands.
    pub cmdque: bool,
    pub vendor: String,
    pub product: String,
    pub revision: String,
}

/// A field as `scsi_strvis` shows it: trimmed, inner blanks collapsed,
/// anything unprintable in octal.
pub fn strvis(field: &[u8]) -> String {
    let blank = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0 | 0xff);
    let start = field.iter().position(|c| !blank(c)).unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|c| !blank(c))
        .map_or(start, |p| p + 1);
    let mut s = String::new();
    let mut last_blank = false;
    for &c in field.get(start..end).unwrap_or(&[]) {
        if blank(&c) {
            if !last_blank {
                s.push(' ');
            }
            last_blank = true;
            continue;
        }
        last_blank = false;
        match c {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7f => s.push(char::from(c)),
            _ => s.push_str(&format!("\\{:03o}", c)),
        }
    }
    s
}

/// Parses INQUIRY data; needs the 5-byte header. Fields past what the
/// target sent (or past its additional length) read as blank, as the
/// kernel fills them with spaces.
pub fn parse_inquiry(d: &[u8]) -> Option<Inquiry> {
    let hdr = d.get(..5)?;
    let valid = (5 + usize::from(hdr[4])).min(d.len());
    let field = |r: core::ops::Range<usize>| {
        strvis(d.get(r.start.min(valid)..r.end.min(valid)).unwrap_or(&[]))
    };
    Some(Inquiry {
        qualifier: hdr[0] >> 5,
        device_type: hdr[0] & 0x1f,
        removable: hdr[1] & 0x80 != 0,
        version: hdr[2] & 0x07,
        // Bytes the target did not send are zero (the kernel's buffer is).
        cmdque: d[..valid].get(7).is_some_and(|f| f & SID_CMDQUE != 0),
        vendor: field(8..16),
        product: field(16..32),
        revision: field(32..36),
    })
}

impl Inquiry {
    /// Whether scsi_probe_link leaves SDEV_NOTAGS clear (scsiconf.c 1.255):
    /// SCSI-1 and older never get tags, later revisions only with
    /// `SID_CmdQue`. Without tags the link gets one opening. (The quirk
    /// table can set it too: `notags_quirk`.)
    pub fn tagged(&self) -> bool {
        self.version >= SCSI_REV_2 && self.cmdque
    }
}

/// The SDEV_NOTAGS entries of scsiconf.c's `scsi_quirk_patterns`:
/// (removable, vendor, product, revision), each a prefix of the raw field.
/// No other entry matches the same devices, so the best match
/// `scsi_inqmatch` picks carries SDEV_NOTAGS exactly when one of these does.
const NOTAGS_QUIRKS: [(bool, &str, &str, &str); 5] = [
    (true, "iomega", "jaz 1GB", ""),
    (false, "MICROP", "4421-07", ""),
    (false, "SEAGATE", "ST150176LW", "0002"),
    (false, "HP", "C3725S", ""),
    (false, "IBM", "DCAS", ""),
];

/// Whether raw INQUIRY data matches a quirk entry that sets SDEV_NOTAGS:
/// the whole device byte is T_DIRECT (qualifier 0), the removable bit
/// agrees, and each pattern is a prefix of its field (fields the target did
/// not send read as spaces, as the kernel fills them).
pub fn notags_quirk(raw: &[u8]) -> bool {
    let valid = raw
        .get(4)
        .map_or(0, |&a| (5 + usize::from(a)).min(raw.len()));
    let byte = |i: usize| if i < valid { raw[i] } else { b' ' };
    let prefix = |at: usize, p: &str| p.bytes().enumerate().all(|(i, b)| byte(at + i) == b);
    let (Some(&dev), Some(&q2)) = (raw.first(), raw.get(1)) else {
        return false;
    };
    let removable = q2 & 0x80 != 0;
    dev == T_DIRECT
        && NOTAGS_QUIRKS.iter().any(|&(rem, v, p, r)| {
            rem == removable && prefix(8, v) && prefix(16, p) && prefix(32, r)
        })
}

/// READ CAPACITY(10): (last LBA, block length).
pub fn parse_read_capacity_10(d: &[u8]) -> Option<(u32, u32)> {
    let lba = d.get(0..4)?.try_into().ok()?;
    let len = d.get(4..8)?.try_into().ok()?;
    Some((u32::from_be_bytes(lba), u32::from_be_bytes(len)))
}

/// READ CAPACITY(16): (last LBA, block length).
pub fn parse_read_capacity_16(d: &[u8]) -> Option<(u64, u32)> {
    let lba = d.get(0..8)?.try_into().ok()?;
    let len = d.get(8..12)?.try_into().ok()?;
    Some((u64::from_be_bytes(lba), u32::from_be_bytes(len)))
}

/// REPORT LUNS: the 8-byte LUN entries the list length announces, cut to
/// the bytes actually present.
pub fn parse_report_luns(d: &[u8]) -> Option<Vec<[u8; 8]>> {
    let len = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?);
    let n = (len / 8) as usize;
    let body = d.get(8..).unwrap_or(&[]);
    Some(
        body.chunks_exact(8)
            .take(n)
            .filter_map(|c| c.try_into().ok())
            .collect(),
    )
}

/// The LUN a single-level, peripheral-addressed entry names (the kernel's
/// `lundata[1]` when `lundata[0] == 0`); `None` for other formats.
pub fn lun_of_entry(e: &[u8; 8]) -> Option<u32> {
    (e[0] == 0).then(|| u32::from(e[1]))
}

/// A REPORT LUNS reply listing `luns` (peripheral addressing), for test
/// targets.
pub fn report_luns_data(luns: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + luns.len() * 8);
    v.extend_from_slice(&((luns.len() * 8) as u32).to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    for &l in luns {
        v.extend_from_slice(&[0, l, 0, 0, 0, 0, 0, 0]);
    }
    v
}

/// Sense key, ASC and ASCQ of fixed (0x70/0x71) or descriptor (0x72/0x73)
/// sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    pub fn parse(s: &[u8]) -> Option<Sense> {
        match s.first()? & 0x7f {
            0x70 | 0x71 => Some(Sense {
                key: s.get(2)? & 0x0f,
                asc: s.get(12).copied().unwrap_or(0),
                ascq: s.get(13).copied().unwrap_or(0),
            }),
            0x72 | 0x73 => Some(Sense {
                key: s.get(1)? & 0x0f,
                asc: s.get(2).copied().unwrap_or(0),
                ascq: s.get(3).copied().unwrap_or(0),
            }),
            _ => None,
        }
    }
}

pub fn sense_key(s: &[u8]) -> Option<u8> {
    Sense::parse(s).map(|x| x.key)
}

pub fn asc_ascq(s: &[u8]) -> Option<(u8, u8)> {
    Sense::parse(s).map(|x| (x.asc, x.ascq))
}

/// Current fixed-format sense data, for test targets.
pub fn fixed_sense(key: u8, asc: u8, ascq: u8) -> [u8; 18] {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = key & 0x0f;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdb_bytes() {
        assert_eq!(test_unit_ready(), [0; 6]);
        assert_eq!(inquiry(36), [0x12, 0, 0, 0, 36, 0]);
        assert_eq!(read_capacity_10(), [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            read_capacity_16(32),
            [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]
        );
        assert_eq!(
            report_luns(0, 2056),
            [0xa0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x08, 0, 0]
        );
        assert_eq!(
            read_10(0x0102_0304, 0x0506),
            [0x28, 0, 1, 2, 3, 4, 0, 5, 6, 0]
        );
        assert_eq!(write_10(1, 2), [0x2a, 0, 0, 0, 0, 1, 0, 0, 2, 0]);
        assert_eq!(
            read_16(0x0102_0304_0506_0708, 0x090a_0b0c),
            [0x88, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0]
        );
        assert_eq!(write_16(1, 1)[0], 0x8a);
        assert_eq!(synchronize_cache_10(), [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn rw_cdb_picks_size() {
        assert_eq!(rw_cdb(false, 0, 8), read_10(0, 8));
        assert_eq!(rw_cdb(true, 0xffff_fff0, 0x10), write_10(0xffff_fff0, 0x10));
        // Ends past 2^32.
        assert_eq!(rw_cdb(false, 0xffff_fff0, 0x11), read_16(0xffff_fff0, 0x11));
        assert_eq!(rw_cdb(true, 1 << 32, 1), write_16(1 << 32, 1));
        // More blocks than READ(10) can say.
        assert_eq!(rw_cdb(false, 0, 0x1_0000), read_16(0, 0x1_0000));
        assert_eq!(rw_cdb(false, u64::MAX, 1), read_16(u64::MAX, 1));
    }

    #[test]
    fn parse_rw_round_trips_and_rejects() {
        for (w, lba, n) in [(false, 7, 3), (true, 1 << 40, 70000), (true, 0, 0)] {
            let c = rw_cdb(w, lba, n);
            assert_eq!(
                parse_rw(&c),
                Some(Rw {
                    write: w,
                    lba,
                    blocks: n
                })
            );
        }
        assert_eq!(parse_rw(&read_10(1, 1)[..9]), None);
        assert_eq!(parse_rw(&[]), None);
        assert_eq!(parse_rw(&inquiry(36)), None);
    }

    fn inq_bytes(dev: u8, ver: u8) -> Vec<u8> {
        let mut d = vec![dev, 0x80, ver, 2, 31, 0, 0, 0x02];
        d.extend_from_slice(b"IET     ");
        d.extend_from_slice(b"VIRTUAL-DISK    ");
        d.extend_from_slice(b"0001");
        d
    }

    #[test]
    fn notags_quirks_match_raw_prefixes() {
        let mut d = vec![0, 0, 5, 2, 31, 0, 0, SID_CMDQUE];
        d.extend_from_slice(b"IBM     DCAS-34330      S65A");
        assert!(notags_quirk(&d));
        // Removable: the entry is for fixed disks only.
        d[1] = 0x80;
        assert!(!notags_quirk(&d));
        d[1] = 0;
        // Not a disk, or another product.
        d[0] = T_STORARRAY;
        assert!(!notags_quirk(&d));
        d[0] = 0;
        d[16..20].copy_from_slice(b"DCAX");
        assert!(!notags_quirk(&d));
        let mut j = vec![0, 0x80, 2, 2, 31, 0, 0, 0];
        j.extend_from_slice(b"iomega  jaz 1GB         J.86");
        assert!(notags_quirk(&j));
        // A revision pattern must match too.
        let mut s = vec![0, 0, 3, 2, 31, 0, 0, SID_CMDQUE];
        s.extend_from_slice(b"SEAGATE ST150176LW      0003");
        assert!(!notags_quirk(&s));
        s[32..36].copy_from_slice(b"0002");
        assert!(notags_quirk(&s));
    }

    #[test]
    fn inquiry_parse() {
        let i = parse_inquiry(&inq_bytes(0x00, 0x06)).unwrap();
        assert_eq!(
            i,
            Inquiry {
                qualifier: 0,
                device_type: 0,
                removable: true,
                version: 6,
                cmdque: true,
                vendor: "IET".into(),
                product: "VIRTUAL-DISK".into(),
                revision: "0001".into(),
            }
        );
        let c = parse_inquiry(&inq_bytes(0x0c, 0x05)).unwrap();
        assert_eq!((c.qualifier, c.device_type, c.version), (0, 0x0c, 5));
        let n = parse_inquiry(&inq_bytes(0x7f, 0x05)).unwrap();
        assert_eq!((n.qualifier, n.device_type), (3, T_NODEVICE));
        // Short replies: header only, or cut inside the product.
        let h = parse_inquiry(&[0, 0, 3, 2, 0]).unwrap();
        assert_eq!((h.vendor.as_str(), h.version), ("", 3));
        let cut = parse_inquiry(&inq_bytes(0, 5)[..20]).unwrap();
        assert_eq!((cut.vendor.as_str(), cut.product.as_str()), ("IET", "VIRT"));
        // Additional length smaller than what was sent wins.
        let mut small = inq_bytes(0, 5);
        small[4] = 11;
        assert_eq!(parse_inquiry(&small).unwrap().product, "");
        assert_eq!(parse_inquiry(&[0, 0, 0, 0]), None);
    }

    #[test]
    fn strvis_like_the_kernel() {
        assert_eq!(strvis(b"  a  b\0\0"), "a b");
        assert_eq!(strvis(b"x\\y\x01\xe9"), "x\\\\y\\001\\351");
        assert_eq!(strvis(b"    "), "");
        assert_eq!(strvis(b""), "");
    }

    #[test]
    fn read_capacity_parse() {
        assert_eq!(
            parse_read_capacity_10(&[0, 0, 0x10, 0, 0, 0, 2, 0]),
            Some((0x1000, 512))
        );
        assert_eq!(parse_read_capacity_10(&[0; 7]), None);
        let mut d = vec![0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0x10, 0];
        d.resize(32, 0);
        assert_eq!(parse_read_capacity_16(&d), Some((0x1_0000_0007, 4096)));
        assert_eq!(parse_read_capacity_16(&d[..11]), None);
    }

    #[test]
    fn report_luns_parse() {
        let d = report_luns_data(&[0, 1, 5]);
        assert_eq!(d.len(), 32);
        let e = parse_report_luns(&d).unwrap();
        let luns: Vec<_> = e.iter().filter_map(lun_of_entry).collect();
        assert_eq!(luns, vec![0, 1, 5]);
        // Announces 3 entries, carries 2 (truncated by the allocation length).
        assert_eq!(parse_report_luns(&d[..24]).unwrap().len(), 2);
        // Announces fewer than carried.
        let mut few = d.clone();
        few[3] = 8;
        assert_eq!(parse_report_luns(&few).unwrap().len(), 1);
        // Flat-space addressing is not a peripheral LUN.
        assert_eq!(lun_of_entry(&[0x40, 3, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(parse_report_luns(&[0, 0, 0]), None);
        assert!(parse_report_luns(&[0, 0, 0, 0xff]).unwrap().is_empty());
    }

    #[test]
    fn sense_formats() {
        let f = fixed_sense(SKEY_UNIT_ATTENTION, 0x29, 0x00);
        assert_eq!(sense_key(&f), Some(6));
        assert_eq!(asc_ascq(&f), Some((0x29, 0)));
        let d = [0x72, 0x05, 0x24, 0x01, 0, 0, 0, 0];
        assert_eq!(
            Sense::parse(&d),
            Some(Sense {
                key: 5,
                asc: 0x24,
                ascq: 1
            })
        );
        // Deferred errors and the VALID bit.
        assert_eq!(sense_key(&[0xf1, 0, 0x03]), Some(3));
        assert_eq!(sense_key(&[0x73, 0x0b]), Some(0xb));
        // Short fixed sense: key only.
        assert_eq!(asc_ascq(&[0x70, 0, 2]), Some((0, 0)));
        assert_eq!(Sense::parse(&[0x70, 0]), None);
        assert_eq!(Sense::parse(&[0x00; 18]), None);
        assert_eq!(Sense::parse(&[]), None);
    }
}
