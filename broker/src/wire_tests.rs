//! Frames built by hand from Kafka's message definitions, legacy and flexible.

use super::*;

/// Builds a frame field by field; `finish` puts the size in front.
#[derive(Default)]
struct Frame {
    bytes: Vec<u8>,
    flexible: bool,
}

impl Frame {
    fn flexible() -> Self {
        Self { bytes: Vec::new(), flexible: true }
    }
    fn i8(mut self, v: i8) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn uvarint(mut self, mut v: u64) -> Self {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
        self
    }
    /// An array or bytes length; `None` is null.
    fn len(self, n: Option<usize>) -> Self {
        match (self.flexible, n) {
            (true, None) => self.uvarint(0),
            (true, Some(n)) => self.uvarint(n as u64 + 1),
            (false, None) => self.i32(-1),
            (false, Some(n)) => self.i32(n as i32),
        }
    }
    fn str(mut self, s: &str) -> Self {
        self =
            if self.flexible { self.uvarint(s.len() as u64 + 1) } else { self.i16(s.len() as i16) };
        self.bytes.extend_from_slice(s.as_bytes());
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.bytes.extend_from_slice(b);
        self
    }
    /// No tagged fields (nothing at all in a legacy version).
    fn tags(self) -> Self {
        if self.flexible { self.uvarint(0) } else { self }
    }
    fn finish(self) -> Vec<u8> {
        let mut out = (self.bytes.len() as i32).to_be_bytes().to_vec();
        out.extend(self.bytes);
        out
    }
}

fn fetch(version: i16) -> RequestHeader {
    RequestHeader { api_key: FETCH, api_version: version }
}

/// A fetch response of one topic with the given partitions `(error, records)`.
fn fetch_response(version: i16, top_error: i16, partitions: &[(i16, Option<&[u8]>)]) -> Vec<u8> {
    let flexible = version >= 12;
    let mut f = Frame { flexible, ..Frame::default() }.i32(7).tags().i32(0);
    if version >= 7 {
        f = f.i16(top_error).i32(0);
    }
    f = f.len(Some(1));
    f = if version >= 13 { f.raw(&[9; 16]) } else { f.str("commands") };
    f = f.len(Some(partitions.len()));
    for (i, (error, records)) in partitions.iter().enumerate() {
        f = f.i32(i as i32).i16(*error).i64(100).i64(100);
        if version >= 5 {
            f = f.i64(0); // log start offset
        }
        f = f.len(None); // aborted transactions
        if version >= 11 {
            f = f.i32(-1);
        }
        f = f.len(records.map(<[u8]>::len));
        if let Some(r) = records {
            f = f.raw(r);
        }
        f = f.tags();
    }
    f.tags().tags().finish()
}

#[test]
fn an_answer_without_records_or_errors_is_empty_in_every_version() {
    for v in [4, 7, 11, 12, 13] {
        let empty = fetch_response(v, 0, &[(0, None), (0, Some(&[]))]);
        assert_eq!(fetch_is_empty(&empty, fetch(v)), Some(true), "v{v}");
        let records = fetch_response(v, 0, &[(0, None), (0, Some(&[1, 2, 3]))]);
        assert_eq!(fetch_is_empty(&records, fetch(v)), Some(false), "v{v}");
        let partition_error = fetch_response(v, 0, &[(1, None)]);
        assert_eq!(fetch_is_empty(&partition_error, fetch(v)), Some(false), "v{v}");
    }
    let top_error = fetch_response(13, 15, &[(0, None)]);
    assert_eq!(fetch_is_empty(&top_error, fetch(13)), Some(false));
}

#[test]
fn a_fetch_session_or_another_replica_is_handed_on_at_once() {
    let session = Frame::flexible().i32(7).tags().i32(0).i16(0).i32(12).len(Some(0)).tags();
    assert_eq!(fetch_is_empty(&session.finish(), fetch(13)), Some(false));
    let f = Frame::flexible().i32(7).tags().i32(0).i16(0).i32(0).len(Some(1)).raw(&[9; 16]);
    let f = f.len(Some(1)).i32(0).i16(0).i64(1).i64(1).i64(0).len(None).i32(2).len(None);
    assert_eq!(fetch_is_empty(&f.tags().tags().tags().finish(), fetch(13)), Some(false));
}

#[test]
fn a_fetch_answer_that_does_not_parse_is_not_called_empty() {
    let empty = fetch_response(13, 0, &[(0, None)]);
    // Cut anywhere before the end: never "empty", so it passes through at once.
    for cut in 4..empty.len() - 1 {
        assert_eq!(fetch_is_empty(&empty[..cut], fetch(13)), None, "cut at {cut}");
    }
    assert_eq!(fetch_is_empty(&empty, fetch(3)), None, "versions before 4 are not read");
}

#[test]
fn a_partition_with_tagged_fields_is_handed_on_at_once() {
    let f = Frame::flexible().i32(7).tags().i32(0).i16(0).i32(0).len(Some(1)).raw(&[9; 16]);
    let f = f.len(Some(1)).i32(0).i16(0).i64(1).i64(1).i64(0).len(None).i32(-1).len(None);
    // One tagged field (a current leader, say): tag 1, two bytes.
    let frame = f.uvarint(1).uvarint(1).uvarint(2).raw(&[0, 0]).tags().tags().finish();
    assert_eq!(fetch_is_empty(&frame, fetch(13)), Some(false));
}

fn request_frame(api_key: i16, version: i16, flexible: bool) -> Frame {
    let f = Frame::default().i16(api_key).i16(version).i32(42).i16(6).raw(b"client");
    if flexible { Frame { flexible: true, ..f }.tags() } else { f }
}

#[test]
fn fetch_requests_say_how_long_they_may_wait() {
    // max wait, min bytes, max bytes, isolation level, session id, session epoch
    let v13 = |min_bytes, epoch| {
        let f = request_frame(FETCH, 13, true).i32(-1).i32(500).i32(min_bytes).i32(1 << 20);
        f.i8(1).i32(0).i32(epoch).finish()
    };
    assert_eq!(fetch_max_wait_ms(&v13(1, -1)), Some(500));
    assert_eq!(fetch_max_wait_ms(&v13(0, -1)), None, "min bytes 0: answered at once");
    assert_eq!(fetch_max_wait_ms(&v13(1, 3)), None, "a fetch session's: not sent twice");
    let v15 = request_frame(FETCH, 15, true).i32(250).i32(1).i32(1 << 20).i8(1).i32(0).i32(-1);
    assert_eq!(fetch_max_wait_ms(&v15.finish()), Some(250), "no replica id from v15");
    let v4 = request_frame(FETCH, 4, false).i32(-1).i32(100).i32(1).finish();
    assert_eq!(fetch_max_wait_ms(&v4), Some(100));
    let produce = request_frame(PRODUCE, 7, false).i16(-1).i16(1).finish();
    assert_eq!(fetch_max_wait_ms(&produce), None);
}

#[test]
fn only_a_produce_with_acks_zero_goes_unanswered() {
    let legacy = |acks| request_frame(PRODUCE, 7, false).i16(-1).i16(acks).i32(1000).finish();
    assert!(expects_no_response(&legacy(0)));
    assert!(!expects_no_response(&legacy(-1)));
    let flexible = |acks| request_frame(PRODUCE, 9, true).uvarint(0).i16(acks).finish();
    assert!(expects_no_response(&flexible(0)));
    assert!(!expects_no_response(&flexible(1)));
    let v2 = request_frame(PRODUCE, 2, false).i16(0).finish();
    assert!(expects_no_response(&v2), "no transactional id before v3");
    assert!(!expects_no_response(&request_frame(FETCH, 4, false).i16(0).finish()));
}

fn port_at(frame: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(frame[at..at + 4].try_into().unwrap())
}

#[test]
fn metadata_advertises_the_front_instead_of_the_broker() {
    let h = RequestHeader { api_key: METADATA, api_version: 12 };
    let f = Frame::flexible().i32(7).tags().i32(0).len(Some(2));
    let f = f.i32(1).str("127.0.0.1").i32(9001).len(None).tags();
    let f = f.i32(2).str("10.0.0.2").i32(9002).str("rack").tags();
    let mut frame = f.raw(&[0xAB; 20]).finish(); // the rest: cluster id, topics, ...
    let before = frame.clone();
    assert_eq!(rewrite_ports(&mut frame, h, 9001, 7000), Some(1));
    let first_port = 4 + 4 + 1 + 4 + 1 + 4 + 1 + 9;
    assert_eq!(port_at(&frame, first_port), 7000);
    let changed: Vec<usize> = (0..frame.len()).filter(|&i| frame[i] != before[i]).collect();
    assert!(changed.iter().all(|&i| (first_port..first_port + 4).contains(&i)), "{changed:?}");

    let legacy = RequestHeader { api_key: METADATA, api_version: 0 };
    let mut frame = Frame::default().i32(7).len(Some(1)).i32(1).str("h").i32(9001).finish();
    assert_eq!(rewrite_ports(&mut frame, legacy, 9001, 7000), Some(1));
    assert_eq!(port_at(&frame, frame.len() - 4), 7000);
}

#[test]
fn coordinators_and_cluster_descriptions_advertise_the_front() {
    let v4 = RequestHeader { api_key: FIND_COORDINATOR, api_version: 4 };
    let f = Frame::flexible().i32(7).tags().i32(0).len(Some(1)).str("group").i32(1);
    let mut frame = f.str("127.0.0.1").i32(9001).i16(0).len(None).tags().tags().finish();
    assert_eq!(rewrite_ports(&mut frame, v4, 9001, 7000), Some(1));
    assert_eq!(port_at(&frame, frame.len() - 4 - 2 - 1 - 1 - 1), 7000);

    let v2 = RequestHeader { api_key: FIND_COORDINATOR, api_version: 2 };
    let f = Frame::default().i32(7).i32(0).i16(0).i16(-1).i32(1).str("127.0.0.1");
    let mut frame = f.i32(9001).finish();
    assert_eq!(rewrite_ports(&mut frame, v2, 9001, 7000), Some(1));
    assert_eq!(port_at(&frame, frame.len() - 4), 7000);

    let describe = RequestHeader { api_key: DESCRIBE_CLUSTER, api_version: 1 };
    let f = Frame::flexible().i32(7).tags().i32(0).i16(0).len(None).i8(1).str("c").i32(1);
    let mut frame = f.len(Some(1)).i32(1).str("127.0.0.1").i32(9001).len(None).tags().finish();
    assert_eq!(rewrite_ports(&mut frame, describe, 9001, 7000), Some(1));
    assert_eq!(port_at(&frame, frame.len() - 4 - 1 - 1), 7000);

    let other = RequestHeader { api_key: PRODUCE, api_version: 9 };
    assert_eq!(rewrite_ports(&mut frame, other, 9001, 7000), None);
}

#[test]
fn frames_are_read_whole_and_absurd_sizes_refused() {
    let frame = Frame::default().i32(1).i32(2).finish();
    let mut stream = [frame.clone(), frame.clone()].concat();
    stream.truncate(stream.len() - 1);
    let mut input = stream.as_slice();
    assert_eq!(read_frame(&mut input).unwrap(), Some(frame));
    assert!(read_frame(&mut input).is_err(), "a frame cut short is an error");
    assert_eq!(read_frame(&mut [].as_slice()).unwrap(), None, "a clean end");
    assert!(read_frame(&mut (-1i32).to_be_bytes().as_slice()).is_err());
    let huge = [i32::MAX.to_be_bytes().as_slice(), &[0; 10]].concat();
    assert!(read_frame(&mut huge.as_slice()).is_err(), "cut short, and nothing reserved for it");
    assert_eq!(request_correlation(&request_frame(FETCH, 4, false).finish()), Some(42));
    assert_eq!(response_correlation(&fetch_response(4, 0, &[])), Some(7));
}
