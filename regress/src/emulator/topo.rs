//! What is attached to the emulated scsibus: disks (sd) and other devices.

use std::collections::HashMap;

use super::scsi::Inquiry;
use super::{DevInfo, DiskInfo};

/// `saa_adapter_buswidth` of vscsi(4): targets 0..=255.
pub(crate) const BUSWIDTH: u32 = 256;
/// `saa_luns` of vscsi(4): LUNs a dumb scan tries.
pub(crate) const LUNS: u32 = 8;

#[derive(Default)]
pub(crate) struct Topo {
    pub(crate) disks: Vec<DiskInfo>,
    pub(crate) devices: Vec<DevInfo>,
    /// Every attached link with its INQUIRY data (the kernel's
    /// `link->inqdata`), disks and others alike.
    links: HashMap<(u32, u32), Vec<u8>>,
    /// Probe and detach tasks finished, for tests to wait on.
    pub(crate) tasks_done: u64,
}

impl Topo {
    pub(crate) fn has_link(&self, target: u32, lun: u32) -> bool {
        self.links.contains_key(&(target, lun))
    }

    pub(crate) fn inquiry(&self, target: u32, lun: u32) -> Option<&[u8]> {
        self.links.get(&(target, lun)).map(Vec::as_slice)
    }

    /// The lowest free sd unit, as autoconf numbers starred devices.
    fn free_unit(&self) -> u32 {
        let mut used: Vec<u32> = self
            .disks
            .iter()
            .filter_map(|d| d.name.strip_prefix("sd")?.parse().ok())
            .collect();
        used.sort_unstable();
        let mut unit = 0;
        for u in used {
            if u == unit {
                unit += 1;
            } else if u > unit {
                break;
            }
        }
        unit
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attach_disk(
        &mut self,
        target: u32,
        lun: u32,
        raw: Vec<u8>,
        inq: &Inquiry,
        openings: usize,
        block_size: u32,
        blocks: u64,
    ) -> DiskInfo {
        let d = DiskInfo {
            name: format!("sd{}", self.free_unit()),
            target,
            lun,
            vendor: inq.vendor.clone(),
            product: inq.product.clone(),
            revision: inq.revision.clone(),
            block_size,
            blocks,
            openings,
        };
        self.links.insert((target, lun), raw);
        self.disks.push(d.clone());
        d
    }

    pub(crate) fn attach_device(
        &mut self,
        target: u32,
        lun: u32,
        raw: Vec<u8>,
        inq: &Inquiry,
        openings: usize,
    ) {
        self.links.insert((target, lun), raw);
        self.devices.push(DevInfo {
            target,
            lun,
            device_type: inq.device_type,
            vendor: inq.vendor.clone(),
            product: inq.product.clone(),
            openings,
        });
    }

    /// The attached links `scsi_detach(bus, target, lun)` would detach.
    pub(crate) fn links_matching(&self, target: i32, lun: i32) -> Vec<(u32, u32)> {
        let mut v: Vec<_> = self
            .links
            .keys()
            .copied()
            .filter(|&(t, l)| hits(target, lun, t, l))
            .collect();
        v.sort_unstable();
        v
    }

    /// `scsi_detach(bus, target, lun)`: (-1, -1) is the bus, (t, -1) a
    /// target, (t, l) one link; -1 for the target alone matches nothing.
    pub(crate) fn detach(&mut self, target: i32, lun: i32) -> usize {
        let hit = |t: u32, l: u32| hits(target, lun, t, l);
        let before = self.links.len();
        self.links.retain(|&(t, l), _| !hit(t, l));
        self.disks.retain(|d| !hit(d.target, d.lun));
        self.devices.retain(|d| !hit(d.target, d.lun));
        before - self.links.len()
    }

    pub(crate) fn clear(&mut self) {
        self.links.clear();
        self.disks.clear();
        self.devices.clear();
    }
}

/// Whether `scsi_detach(bus, target, lun)` reaches link (t, l): (-1, -1)
/// is the bus, (t, -1) a target; -1 for the target alone matches nothing.
fn hits(target: i32, lun: i32, t: u32, l: u32) -> bool {
    match (target, lun) {
        (-1, -1) => true,
        (-1, _) => false,
        (tt, -1) => i64::from(tt) == i64::from(t),
        (tt, ll) => i64::from(tt) == i64::from(t) && i64::from(ll) == i64::from(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inq(t: u8) -> Inquiry {
        Inquiry {
            qualifier: 0,
            device_type: t,
            removable: false,
            version: 5,
            cmdque: true,
            vendor: "V".into(),
            product: "P".into(),
            revision: "R".into(),
        }
    }

    fn names(t: &Topo) -> Vec<String> {
        t.disks.iter().map(|d| d.name.clone()).collect()
    }

    #[test]
    fn disks_take_the_lowest_free_unit() {
        let mut t = Topo::default();
        for l in 0..3 {
            t.attach_disk(0, l, vec![l as u8], &inq(0), 16, 512, 100);
        }
        assert_eq!(names(&t), ["sd0", "sd1", "sd2"]);
        assert_eq!(t.detach(0, 1), 1);
        let d = t.attach_disk(1, 0, vec![], &inq(0), 16, 4096, 8);
        assert_eq!((d.name.as_str(), d.block_size, d.blocks), ("sd1", 4096, 8));
        assert_eq!(t.attach_disk(1, 1, vec![], &inq(0), 16, 512, 1).name, "sd3");
        assert_eq!(t.inquiry(0, 2), Some(&[2u8][..]));
    }

    #[test]
    fn detach_wildcards_like_scsi_detach() {
        let mut t = Topo::default();
        t.attach_device(0, 0, vec![], &inq(0x0c), 16);
        t.attach_disk(0, 1, vec![], &inq(0), 16, 512, 1);
        t.attach_disk(1, 1, vec![], &inq(0), 16, 512, 1);
        t.attach_disk(2, 0, vec![], &inq(0), 16, 512, 1);
        assert_eq!(t.detach(-1, 1), 0);
        assert_eq!(t.detach(5, -1), 0);
        assert_eq!(t.detach(0, -1), 2);
        assert!(t.devices.is_empty());
        assert!(!t.has_link(0, 1) && t.has_link(1, 1));
        assert_eq!(t.detach(1, 1), 1);
        assert_eq!(t.detach(-1, -1), 1);
        assert!(t.disks.is_empty());
        t.attach_disk(3, 3, vec![], &inq(0), 16, 512, 1);
        t.clear();
        assert!(!t.has_link(3, 3) && t.disks.is_empty());
    }
}
