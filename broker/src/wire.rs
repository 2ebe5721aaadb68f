//! Just enough of the Kafka wire protocol for [`crate::long_poll`]: frames, request
//! headers, whether a fetch response carries anything, and where the broker addresses
//! sit in the responses that advertise them (Metadata, FindCoordinator, DescribeCluster).
//!
//! Every reader returns `None` on bytes it does not understand; the caller then passes the
//! frame on untouched. Layouts are Kafka's message definitions
//! (`clients/src/main/resources/common/message/*.json`): "flexible" versions use compact
//! (unsigned varint, length + 1) arrays and strings and end every structure with tagged
//! fields.

use std::io::{self, Read, Write};

pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const LIST_OFFSETS: i16 = 2;
pub const METADATA: i16 = 3;
pub const FIND_COORDINATOR: i16 = 10;
pub const INIT_PRODUCER_ID: i16 = 22;
pub const OFFSET_FOR_LEADER_EPOCH: i16 = 23;
pub const END_TXN: i16 = 26;
pub const DESCRIBE_CLUSTER: i16 = 60;

/// Memory reserved for a frame before its bytes arrive: a size prefix alone does not get
/// a large allocation (the dev broker does answer single fetches of hundreds of MB, and
/// librdkafka is configured to accept them, so no size is refused).
const RESERVE_AHEAD: usize = 1 << 20;

/// Read one size-prefixed frame; the returned buffer keeps the 4-byte prefix so it can be
/// written on as it came. `Ok(None)` is a clean end of stream before a frame.
pub fn read_frame(from: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut size = [0u8; 4];
    match from.read_exact(&mut size) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = i32::from_be_bytes(size);
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("frame size {len}")))?;
    let mut frame = Vec::with_capacity(4 + len.min(RESERVE_AHEAD));
    frame.extend_from_slice(&size);
    from.take(len as u64).read_to_end(&mut frame)?;
    if frame.len() != 4 + len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "frame cut short"));
    }
    Ok(Some(frame))
}

pub fn write_frame(to: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    to.write_all(frame)
}

/// A request's correlation id (after the size, API key and version).
pub fn request_correlation(frame: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(frame.get(8..12)?.try_into().ok()?))
}

/// A response's correlation id (right after the size).
pub fn response_correlation(frame: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(frame.get(4..8)?.try_into().ok()?))
}

/// The fields of a request header this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
}

/// A request frame's header and a reader placed at its body.
pub fn request(frame: &[u8]) -> Option<(RequestHeader, Reader<'_>)> {
    let mut r = Reader::new(frame.get(4..)?, false);
    let header = RequestHeader { api_key: r.i16()?, api_version: r.i16()? };
    r.i32()?; // correlation id
    r.nullable_legacy_string()?; // client id: never compact
    r.set_flexible(request_is_flexible(header));
    r.tagged_fields()?;
    Some((header, r))
}

/// Whether the request expects no response: a produce with `acks=0`.
pub fn expects_no_response(frame: &[u8]) -> bool {
    let Some((h, mut r)) = request(frame) else { return false };
    if h.api_key != PRODUCE {
        return false;
    }
    let mut acks = || {
        if h.api_version >= 3 {
            r.nullable_string()?; // transactional id
        }
        r.i16()
    };
    acks() == Some(0)
}

/// How long a fetch request may be held (its `max_wait_ms`); `None` for one Kafka would
/// answer at once however empty (`min_bytes` 0 or less) and for a fetch of an
/// incremental fetch session, which a second copy of the same request would upset
/// (librdkafka uses none: it sends session 0, epoch -1).
pub fn fetch_max_wait_ms(frame: &[u8]) -> Option<i32> {
    let (h, mut r) = request(frame)?;
    let v = h.api_version;
    if h.api_key != FETCH {
        return None;
    }
    if v <= 14 {
        r.i32()?; // replica id
    }
    let max_wait = r.i32()?;
    if r.i32()? <= 0 {
        return None; // min bytes
    }
    if v >= 7 {
        r.skip(4 + 1)?; // max bytes, isolation level
        r.i32()?; // session id
        if r.i32()? != -1 {
            return None; // session epoch
        }
    }
    Some(max_wait)
}

/// Versions at and above which each API is flexible (a compact encoding, tagged fields).
fn flexible_from(api_key: i16) -> Option<i16> {
    Some(match api_key {
        PRODUCE => 9,
        FETCH => 12,
        METADATA => 9,
        FIND_COORDINATOR => 3,
        INIT_PRODUCER_ID => 2,
        END_TXN => 3,
        DESCRIBE_CLUSTER => 0,
        18 => 3, // ApiVersions: the request only; its response header is never flexible
        _ => return None,
    })
}

fn request_is_flexible(h: RequestHeader) -> bool {
    flexible_from(h.api_key).is_some_and(|v| h.api_version >= v)
}

/// Whether the response to `h` is flexible, and where its body begins in the frame;
/// `None` for APIs this module does not know the encoding of.
fn response(frame: &[u8], h: RequestHeader) -> Option<(bool, usize)> {
    let flexible = h.api_version >= flexible_from(h.api_key)?;
    let mut r = Reader::new(frame.get(4..)?, flexible);
    r.i32()?; // correlation id
    if flexible {
        r.tagged_fields()?;
    }
    Some((flexible, 4 + r.pos))
}

/// True when a fetch response has no records and no error anywhere in it: what a broker
/// holding fetches would not have answered yet. `None` when the bytes do not parse.
pub fn fetch_is_empty(frame: &[u8], h: RequestHeader) -> Option<bool> {
    let v = h.api_version;
    if h.api_key != FETCH || v < 4 {
        return None;
    }
    let (flexible, at) = response(frame, h)?;
    let mut r = Reader::new(&frame[at..], flexible);
    r.i32()?; // throttle time
    if v >= 7 && (r.i16()? != 0 || r.i32()? != 0) {
        return Some(false); // an error, or a fetch session's answer
    }
    for _ in 0..r.array_len()? {
        if v >= 13 {
            r.skip(16)?; // topic id
        } else {
            r.string()?;
        }
        for _ in 0..r.array_len()? {
            r.i32()?; // partition
            if r.i16()? != 0 {
                return Some(false);
            }
            r.skip(8 + 8)?; // high watermark, last stable offset
            if v >= 5 {
                r.skip(8)?; // log start offset
            }
            for _ in 0..r.nullable_array_len()?.unwrap_or(0) {
                r.skip(8 + 8)?; // aborted transaction: producer id, first offset
                r.tagged_fields()?;
            }
            if v >= 11 && r.i32()? != -1 {
                return Some(false); // read from another replica: the client must know
            }
            if r.nullable_bytes_len()?.unwrap_or(0) > 0 {
                return Some(false);
            }
            if r.tagged_fields()? > 0 {
                return Some(false); // a diverging epoch, a new leader: let the client see it
            }
        }
        r.tagged_fields()?;
    }
    Some(true)
}

/// In a Metadata, FindCoordinator or DescribeCluster response, replace every advertised
/// broker port `from` with `to` (in place: a port is a fixed-width field). Returns how
/// many were replaced; `None` for other APIs or bytes that do not parse.
pub fn rewrite_ports(frame: &mut [u8], h: RequestHeader, from: u16, to: u16) -> Option<usize> {
    let v = h.api_version;
    let (flexible, at) = response(frame, h)?;
    let body = &mut frame[at..];
    let mut ports = Vec::new();
    {
        let mut r = Reader::new(body, flexible);
        match h.api_key {
            METADATA => {
                if v >= 3 {
                    r.i32()?; // throttle time
                }
                for _ in 0..r.array_len()? {
                    r.i32()?; // node id
                    r.string()?;
                    ports.push(r.pos);
                    r.i32()?;
                    if v >= 1 {
                        r.nullable_string()?; // rack
                    }
                    r.tagged_fields()?;
                }
            }
            FIND_COORDINATOR if v >= 4 => {
                r.i32()?; // throttle time
                for _ in 0..r.array_len()? {
                    r.string()?; // key
                    r.i32()?; // node id
                    r.string()?; // host
                    ports.push(r.pos);
                    r.i32()?;
                    r.i16()?; // error code
                    r.nullable_string()?; // error message
                    r.tagged_fields()?;
                }
            }
            FIND_COORDINATOR => {
                if v >= 1 {
                    r.i32()?; // throttle time
                }
                r.i16()?; // error code
                if v >= 1 {
                    r.nullable_string()?; // error message
                }
                r.i32()?; // node id
                r.string()?; // host
                ports.push(r.pos);
                r.i32()?;
            }
            DESCRIBE_CLUSTER if v <= 1 => {
                r.i32()?; // throttle time
                r.i16()?; // error code
                r.nullable_string()?; // error message
                if v >= 1 {
                    r.skip(1)?; // endpoint type
                }
                r.string()?; // cluster id
                r.i32()?; // controller id
                for _ in 0..r.array_len()? {
                    r.i32()?; // broker id
                    r.string()?; // host
                    ports.push(r.pos);
                    r.i32()?;
                    r.nullable_string()?; // rack
                    r.tagged_fields()?;
                }
            }
            _ => return None,
        }
    }
    let mut replaced = 0;
    for at in ports {
        let field = &mut body[at..at + 4];
        if i32::from_be_bytes(field.try_into().ok()?) == i32::from(from) {
            field.copy_from_slice(&i32::from(to).to_be_bytes());
            replaced += 1;
        }
    }
    Some(replaced)
}

/// A cursor over big-endian Kafka fields; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    flexible: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], flexible: bool) -> Self {
        Self { buf, pos: 0, flexible }
    }

    fn set_flexible(&mut self, flexible: bool) {
        self.flexible = flexible;
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A length that is -1 (legacy) or 0 (compact) for null; `Some(None)` then.
    fn nullable_len(&mut self) -> Option<Option<usize>> {
        if self.flexible {
            match self.uvarint()? {
                0 => Some(None),
                n => Some(Some(usize::try_from(n - 1).ok()?)),
            }
        } else {
            let n = self.i32()?;
            if n < 0 { Some(None) } else { Some(Some(usize::try_from(n).ok()?)) }
        }
    }

    fn array_len(&mut self) -> Option<usize> {
        self.nullable_array_len()?
    }

    fn nullable_array_len(&mut self) -> Option<Option<usize>> {
        self.nullable_len()
    }

    fn nullable_bytes_len(&mut self) -> Option<Option<usize>> {
        let n = self.nullable_len()?;
        if let Some(n) = n {
            self.skip(n)?;
        }
        Some(n)
    }

    fn nullable_legacy_string(&mut self) -> Option<()> {
        let n = self.i16()?;
        if n > 0 {
            self.skip(usize::try_from(n).ok()?)?;
        }
        Some(())
    }

    fn nullable_string(&mut self) -> Option<()> {
        if self.flexible {
            let n = self.uvarint()?;
            self.skip(usize::try_from(n.saturating_sub(1)).ok()?)
        } else {
            self.nullable_legacy_string()
        }
    }

    fn string(&mut self) -> Option<()> {
        self.nullable_string()
    }

    /// Skips tagged fields (none in legacy versions); returns how many there were.
    fn tagged_fields(&mut self) -> Option<u64> {
        if !self.flexible {
            return Some(0);
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?; // tag
            let size = self.uvarint()?;
            self.skip(usize::try_from(size).ok()?)?;
        }
        Some(count)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
