//! TensorBoard event files: `runs/<id>/tb/events.out.tfevents.<unix time>.<host>`, one scalar per
//! metric per step (the names of `metrics.jsonl` / `eval.jsonl`, step = the training step), each
//! event written to the file as soon as it is made so that `tensorboard --logdir` follows a run live.
//!
//! Written here rather than with a crate. Checked on crates.io on 2026-12-01:
//! - `tensorboard-rs` 0.5.9 (last release 2022-03): `protobuf` 2 (unmaintained) and `image` 0.23;
//! - `tboard` 0.1.1 (2024-01): generates its protobuf code at build time with `prost-build`, which
//!   needs a `protoc` binary that neither this machine nor CI has;
//! - `tfrecord` 0.15.0 (2023-09): `prost`, `num`, `itertools` and more, and no license declared.
//!
//! The format is small. A file is a sequence of TFRecords (u64 length, masked CRC-32C of those 8
//! bytes, the data, masked CRC-32C of the data; all little-endian; CRC-32C from the maintained
//! `crc32c` crate), each holding one `tensorflow.Event` protobuf of which this module uses
//! `wall_time` (1, double), `step` (2, int64), `file_version` (3, string), `summary` (5: repeated
//! `Summary.Value` (1) with `tag` (1, string) and `simple_value` (2, float)) and `session_log`
//! (7: `status` (1, enum; START = 1)). Values are stored as f32, as TensorBoard's scalars are.
//!
//! Resume: a resumed run opens a new file (TensorBoard reads every event file of a directory, in
//! name order) that starts with a `SessionLog START` event at the first step it will write.
//! TensorBoard's Python loader then drops every earlier event at that step or later; its default
//! fast loader (the Rust data server) ignores `SessionLog`, but replaces a tag's points at steps
//! ≥ s when that tag's next point at step s arrives. Either way the repeated steps show the
//! resumed run's values, as `metrics.jsonl` (cut back to the checkpoint) does.
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first event of every file; version 2 makes TensorBoard honour `SessionLog START`.
const FILE_VERSION: &str = "brain.Event:2";
const FILE_PREFIX: &str = "events.out.tfevents.";

/// An open event file.
#[derive(Debug)]
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed), starting with the file version and, when
    /// the run resumes, a `SessionLog START` at `resume_step` (the first step it will write).
    pub fn create(dir: &Path, resume_step: Option<u64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let secs = now().trunc() as u64;
        let base = format!("{FILE_PREFIX}{secs}.{}", hostname());
        // A run resumed within the same second on the same host must not reuse the name.
        let mut n = 0;
        let (file, path) = loop {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let path = dir.join(name);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(Error::io(&path, e)),
            }
        };
        let mut w = EventWriter { file, path };
        let mut version = Vec::new();
        put_bytes(&mut version, 3, FILE_VERSION.as_bytes());
        w.write_event(0, &version)?;
        if let Some(step) = resume_step {
            let mut log = Vec::new();
            put_key(&mut log, 1, 0);
            put_varint(&mut log, 1); // SessionLog.START
            let mut what = Vec::new();
            put_bytes(&mut what, 7, &log);
            w.write_event(step, &what)?;
        }
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event at `step` holding every value of `row` as a scalar named by its key.
    pub fn write_scalars(&mut self, step: u64, row: &BTreeMap<String, f64>) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, &v) in row {
            let mut value = Vec::new();
            put_bytes(&mut value, 1, tag.as_bytes());
            put_key(&mut value, 2, 5);
            value.extend_from_slice(&(v as f32).to_le_bytes());
            put_bytes(&mut summary, 1, &value);
        }
        let mut what = Vec::new();
        put_bytes(&mut what, 5, &summary);
        self.write_event(step, &what)
    }

    /// Frame an `Event` (wall time now, `step`, then the already encoded `what` field) as one
    /// record and hand it to the OS in one write.
    fn write_event(&mut self, step: u64, what: &[u8]) -> Result<()> {
        let mut event = Vec::with_capacity(what.len() + 20);
        put_key(&mut event, 1, 1);
        event.extend_from_slice(&now().to_le_bytes());
        put_key(&mut event, 2, 0);
        put_varint(&mut event, step);
        event.extend_from_slice(what);
        let len = (event.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(event.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(&event);
        rec.extend_from_slice(&masked_crc(&event).to_le_bytes());
        self.file
            .write_all(&rec)
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name, as TensorBoard writers put it in the file name.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).replace('/', "_");
    if rc != 0 || name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// CRC-32C rotated and offset, as TFRecord stores it.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(buf, (field << 3) | wire);
}

fn put_bytes(buf: &mut Vec<u8>, field: u64, data: &[u8]) {
    put_key(buf, field, 2);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// One event read back: what this module writes, and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    /// A `SessionLog START`.
    pub session_start: bool,
    /// `Summary.Value`s with a `simple_value`, in file order.
    pub scalars: Vec<(String, f32)>,
}

/// The events of a file, each record's CRCs checked. A torn last record (a writer killed
/// mid-write) is ignored; a bad CRC or a malformed event is an error naming the record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |i: usize, msg: &str| Error::Input(format!("{}: record {i}: {msg}", path.display()));
    let mut events = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 12 {
        let i = events.len();
        let (len, crc) = (&rest[..8], u32_at(rest, 8));
        if masked_crc(len) != crc {
            return Err(bad(i, "length CRC mismatch"));
        }
        let n = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let Some(body) = rest.get(12..12 + n) else {
            break;
        };
        let Some(crc) = rest.get(12 + n..16 + n).map(|b| u32_at(b, 0)) else {
            break;
        };
        if masked_crc(body) != crc {
            return Err(bad(i, "data CRC mismatch"));
        }
        events.push(decode_event(body).map_err(|m| bad(i, m))?);
        rest = &rest[16 + n..];
    }
    Ok(events)
}

/// The events of every file of a `tb/` directory, files in name order (as TensorBoard reads them).
pub fn read_dir_events(dir: &Path) -> Result<Vec<Event>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(FILE_PREFIX))
        })
        .collect();
    files.sort();
    let mut events = Vec::new();
    for f in files {
        events.extend(read_events(&f)?);
    }
    Ok(events)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A protobuf field: its number and its value (varint, fixed64, bytes or fixed32).
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

/// The fields of a message, in order.
fn fields(mut b: &[u8]) -> std::result::Result<Vec<(u64, Field<'_>)>, &'static str> {
    fn varint(b: &mut &[u8]) -> std::result::Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or("truncated varint")?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }
    fn take<'a>(b: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], &'static str> {
        if b.len() < n {
            return Err("truncated field");
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut b)?),
            1 => Field::Fixed64(take(&mut b, 8)?.try_into().expect("8 bytes")),
            2 => {
                let n = varint(&mut b)? as usize;
                Field::Bytes(take(&mut b, n)?)
            }
            5 => Field::Fixed32(take(&mut b, 4)?.try_into().expect("4 bytes")),
            _ => return Err("unsupported wire type"),
        };
        out.push((key >> 3, field));
    }
    Ok(out)
}

fn decode_event(b: &[u8]) -> std::result::Result<Event, &'static str> {
    let mut ev = Event {
        wall_time: 0.0,
        step: 0,
        file_version: None,
        session_start: false,
        scalars: Vec::new(),
    };
    for (num, f) in fields(b)? {
        match (num, f) {
            (1, Field::Fixed64(x)) => ev.wall_time = f64::from_le_bytes(x),
            (2, Field::Varint(x)) => ev.step = x as i64,
            (3, Field::Bytes(s)) => {
                ev.file_version = Some(String::from_utf8(s.to_vec()).map_err(|_| "bad UTF-8")?)
            }
            (5, Field::Bytes(s)) => ev.scalars.extend(decode_summary(s)?),
            (7, Field::Bytes(s)) => {
                ev.session_start = fields(s)?
                    .iter()
                    .any(|(n, f)| *n == 1 && matches!(f, Field::Varint(1)))
            }
            _ => {}
        }
    }
    Ok(ev)
}

fn decode_summary(b: &[u8]) -> std::result::Result<Vec<(String, f32)>, &'static str> {
    let mut out = Vec::new();
    for (num, f) in fields(b)? {
        let (1, Field::Bytes(value)) = (num, f) else {
            continue;
        };
        let (mut tag, mut v) = (None, None);
        for (n, f) in fields(value)? {
            match (n, f) {
                (1, Field::Bytes(s)) => tag = Some(String::from_utf8(s.to_vec())),
                (2, Field::Fixed32(x)) => v = Some(f32::from_le_bytes(x)),
                _ => {}
            }
        }
        if let (Some(tag), Some(v)) = (tag, v) {
            out.push((tag.map_err(|_| "bad UTF-8 tag")?, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "tensorboard_tests.rs"]
mod tests;
