//! A small binary encoding for imsg payloads: fixed-width integers in
//! network byte order, length-prefixed strings and byte strings.
//!
//! Payloads cross a privilege boundary (iscsictl -> iscsid, engine <-> relay),
//! so every read is bounds-checked and fails with a `WireError`, never a panic.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The payload ended before the field did.
    Short { want: usize, have: usize },
    /// A string was not valid UTF-8.
    Utf8,
    /// A tag byte had a value no variant uses.
    BadTag(&'static str, u8),
    /// Bytes were left after the last field.
    Trailing(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Short { want, have } => {
                write!(f, "truncated message: need {want} bytes, have {have}")
            }
            WireError::Utf8 => write!(f, "string is not UTF-8"),
            WireError::BadTag(what, v) => write!(f, "bad {what} value {v}"),
            WireError::Trailing(n) => write!(f, "{n} trailing bytes"),
        }
    }
}

impl std::error::Error for WireError {}

/// Appends fields to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Length-prefixed (u32) bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        // Payloads are bounded by the imsg size limit, far below 4 GiB.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
        self
    }

    /// Bytes with no length prefix (the rest of the payload).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }

    pub fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        match v {
            Some(n) => self.u8(1).u32(n),
            None => self.u8(0),
        }
    }

    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(n) => self.u8(1).u64(n),
            None => self.u8(0),
        }
    }

    pub fn opt_bool(&mut self, v: Option<bool>) -> &mut Self {
        self.u8(match v {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        })
    }

    pub fn ip(&mut self, a: &IpAddr) -> &mut Self {
        match a {
            IpAddr::V4(v4) => self.u8(4).raw(&v4.octets()),
            IpAddr::V6(v6) => self.u8(6).raw(&v6.octets()),
        }
    }

    pub fn sockaddr(&mut self, a: &SocketAddr) -> &mut Self {
        self.ip(&a.ip()).u16(a.port());
        if let SocketAddr::V6(v6) = a {
            self.u32(v6.scope_id());
        }
        self
    }

    pub fn opt_sockaddr(&mut self, a: Option<&SocketAddr>) -> &mut Self {
        match a {
            Some(a) => self.u8(1).sockaddr(a),
            None => self.u8(0),
        }
    }

    pub fn opt_ip(&mut self, a: Option<&IpAddr>) -> &mut Self {
        match a {
            Some(a) => self.u8(1).ip(a),
            None => self.u8(0),
        }
    }
}

/// Takes fields off a payload.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn end(&self) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Short {
                want: n,
                have: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::BadTag("bool", v)),
        }
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()?;
        self.take(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// The rest of the payload.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn str(&mut self) -> Result<String, WireError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::Utf8)
    }

    fn present(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::BadTag(what, v)),
        }
    }

    pub fn opt_str(&mut self) -> Result<Option<String>, WireError> {
        if self.present("option")? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_u32(&mut self) -> Result<Option<u32>, WireError> {
        if self.present("option")? {
            self.u32().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_u64(&mut self) -> Result<Option<u64>, WireError> {
        if self.present("option")? {
            self.u64().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_bool(&mut self) -> Result<Option<bool>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(false)),
            2 => Ok(Some(true)),
            v => Err(WireError::BadTag("option", v)),
        }
    }

    pub fn ip(&mut self) -> Result<IpAddr, WireError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            v => Err(WireError::BadTag("address family", v)),
        }
    }

    pub fn sockaddr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = self.ip()?;
        let port = self.u16()?;
        Ok(match ip {
            IpAddr::V4(_) => SocketAddr::new(ip, port),
            IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, self.u32()?)),
        })
    }

    pub fn opt_sockaddr(&mut self) -> Result<Option<SocketAddr>, WireError> {
        if self.present("option")? {
            self.sockaddr().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_ip(&mut self) -> Result<Option<IpAddr>, WireError> {
        if self.present("option")? {
            self.ip().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_network_order() {
        let mut w = Writer::new();
        w.u8(1).u16(0x0203).u32(0x0405_0607).str("ab");
        assert_eq!(
            w.into_inner(),
            [1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn round_trip() {
        let a6: SocketAddr = "[fe80::1%3]:3260".parse().unwrap();
        let a4: SocketAddr = "10.0.0.2:3261".parse().unwrap();
        let mut w = Writer::new();
        w.u64(u64::MAX)
            .i32(-1)
            .bool(true)
            .opt_str(Some("x"))
            .opt_str(None)
            .opt_u32(Some(7))
            .opt_bool(Some(false))
            .sockaddr(&a6)
            .opt_sockaddr(Some(&a4))
            .opt_ip(None);
        let buf = w.into_inner();
        let mut r = Reader::new(&buf);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i32().unwrap(), -1);
        assert!(r.bool().unwrap());
        assert_eq!(r.opt_str().unwrap().as_deref(), Some("x"));
        assert_eq!(r.opt_str().unwrap(), None);
        assert_eq!(r.opt_u32().unwrap(), Some(7));
        assert_eq!(r.opt_bool().unwrap(), Some(false));
        assert_eq!(r.sockaddr().unwrap(), a6);
        assert_eq!(r.opt_sockaddr().unwrap(), Some(a4));
        assert_eq!(r.opt_ip().unwrap(), None);
        r.end().unwrap();
    }

    #[test]
    fn hostile_input_is_an_error() {
        // A length prefix far past the buffer.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, b'a']);
        assert_eq!(
            r.str(),
            Err(WireError::Short {
                want: 0xffff_ffff,
                have: 1
            })
        );
        let mut r = Reader::new(&[0, 0, 0, 2, 0xff, 0xfe]);
        assert_eq!(r.str(), Err(WireError::Utf8));
        let mut r = Reader::new(&[9]);
        assert_eq!(r.ip(), Err(WireError::BadTag("address family", 9)));
        let mut r = Reader::new(&[2]);
        assert_eq!(r.bool(), Err(WireError::BadTag("bool", 2)));
        let r = Reader::new(&[0]);
        assert_eq!(r.end(), Err(WireError::Trailing(1)));
        let mut r = Reader::new(&[]);
        assert!(r.u32().is_err());
    }
}
