use super::*;

fn row(kv: &[(&str, f64)]) -> BTreeMap<String, f64> {
    kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn crc32c_is_the_castagnoli_polynomial() {
    // The standard check value of CRC-32C.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(
        masked_crc(b"123456789"),
        0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
    );
}

#[test]
fn written_events_read_back_with_checked_crcs() {
    let tmp = tempfile::tempdir().unwrap();
    let before = now();
    let mut w = EventWriter::create(tmp.path(), None).unwrap();
    w.write_scalars(
        1,
        &row(&[("reward/mean", 0.25), ("actor/pg_loss", -1.5e-3)]),
    )
    .unwrap();
    w.write_scalars(
        2,
        &row(&[("reward/mean", 0.5), ("actor/pg_loss", f64::NAN)]),
    )
    .unwrap();
    w.write_scalars(2, &row(&[("eval/addition/avg@4", 0.75)]))
        .unwrap();
    let path = only_file(tmp.path());
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("events.out.tfevents.") && name.ends_with(&hostname()),
        "{name}"
    );
    assert_eq!(w.path(), path);
    // Each write reaches the file at once (no buffer to flush).
    let ev = read_events(&path).unwrap();
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[0].file_version.as_deref(), Some("brain.Event:2"));
    assert!(ev[0].scalars.is_empty() && !ev[0].session_start);
    for e in &ev {
        assert!(
            e.wall_time >= before.floor() && e.wall_time <= now() + 1.0,
            "{e:?}"
        );
    }
    assert_eq!(ev[1].step, 1);
    assert_eq!(
        ev[1].scalars,
        vec![
            ("actor/pg_loss".into(), -1.5e-3f32),
            ("reward/mean".into(), 0.25)
        ]
    );
    assert_eq!(ev[2].step, 2);
    assert_eq!(ev[2].scalars[0].0, "actor/pg_loss");
    assert!(ev[2].scalars[0].1.is_nan());
    assert_eq!(ev[3].scalars, vec![("eval/addition/avg@4".into(), 0.75f32)]);
    assert_eq!(read_dir_events(tmp.path()).unwrap().len(), 4);
}

#[test]
fn a_resumed_writer_opens_a_new_file_that_starts_a_session() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = EventWriter::create(tmp.path(), None).unwrap();
    a.write_scalars(3, &row(&[("x", 3.0)])).unwrap();
    let b = EventWriter::create(tmp.path(), Some(3)).unwrap();
    assert_ne!(a.path(), b.path());
    let ev = read_events(b.path()).unwrap();
    assert_eq!(ev.len(), 2);
    assert!(ev[1].session_start && ev[1].step == 3, "{:?}", ev[1]);
    // In name order: the first file, then the resumed one.
    let all = read_dir_events(tmp.path()).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[1].scalars, vec![("x".into(), 3.0f32)]);
    assert!(all[3].session_start);
}

#[test]
fn a_corrupt_record_is_named_and_a_torn_tail_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(tmp.path(), None).unwrap();
    w.write_scalars(1, &row(&[("x", 1.0)])).unwrap();
    w.write_scalars(2, &row(&[("x", 2.0)])).unwrap();
    let path = w.path().to_path_buf();
    let bytes = std::fs::read(&path).unwrap();

    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let ev = read_events(&path).unwrap();
    assert_eq!(ev.len(), 2, "the torn last record is dropped");

    let mut bad = bytes.clone();
    let last = bad.len() - 6; // inside the last record's data
    bad[last] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let err = read_events(&path).unwrap_err().to_string();
    assert!(
        err.contains("record 2") && err.contains("data CRC"),
        "{err}"
    );

    let mut bad = bytes;
    bad[0] ^= 1; // the first record's length
    std::fs::write(&path, &bad).unwrap();
    let err = read_events(&path).unwrap_err().to_string();
    assert!(
        err.contains("record 0") && err.contains("length CRC"),
        "{err}"
    );
}

#[test]
fn large_steps_and_long_tags_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(tmp.path(), None).unwrap();
    let tag = "t/".repeat(100);
    w.write_scalars(1 << 40, &row(&[(&tag, f64::INFINITY)]))
        .unwrap();
    let ev = read_events(w.path()).unwrap();
    assert_eq!(ev[1].step, 1 << 40);
    assert_eq!(ev[1].scalars, vec![(tag, f32::INFINITY)]);
}

/// The committed fixture (`tests/fixtures/tensorboard`, made by its `make_fixture.py`): the event
/// files of a tiny run resumed once, and what TensorBoard 2.21's EventAccumulator reads from them.
fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tensorboard")
}

type Points = BTreeMap<String, Vec<(i64, f32)>>;

/// The scalars as TensorBoard's Python loader keeps them: events in file-name order, and a
/// `SessionLog START` at step s drops every point read before it at step ≥ s.
fn as_tensorboard_reads(events: &[Event]) -> Points {
    let mut m = Points::new();
    for e in events {
        if e.session_start {
            for v in m.values_mut() {
                v.retain(|(s, _)| *s < e.step);
            }
        }
        for (t, x) in &e.scalars {
            m.entry(t.clone()).or_default().push((e.step, *x));
        }
    }
    m
}

fn fixture_json() -> (Vec<String>, Points) {
    let text = std::fs::read_to_string(fixture().join("scalars.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let files = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.parse::<f32>().unwrap(),
        v => v.as_f64().unwrap() as f32,
    };
    let points = doc["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, pts)| {
            let pts = pts.as_array().unwrap().iter();
            let pts = pts
                .map(|p| (p[0].as_i64().unwrap(), value(&p[1])))
                .collect();
            (tag.clone(), pts)
        })
        .collect();
    (files, points)
}

fn same_points(a: &Points, b: &Points) -> bool {
    let same = |x: f32, y: f32| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
    a.keys().eq(b.keys())
        && a.iter().zip(b.values()).all(|((_, p), q)| {
            p.len() == q.len() && p.iter().zip(q).all(|(x, y)| x.0 == y.0 && same(x.1, y.1))
        })
}

#[test]
fn the_reader_agrees_with_tensorboard_on_the_fixture() {
    let (files, want) = fixture_json();
    let dir = fixture().join("tb");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, files);
    let got = as_tensorboard_reads(&read_dir_events(&dir).unwrap());
    assert!(want.contains_key("actor/entropy") && want.keys().any(|t| t.starts_with("eval/")));
    // The resumed run's repeated steps 3 and 4 appear once.
    let steps: Vec<i64> = want["actor/entropy"].iter().map(|p| p.0).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    assert!(
        same_points(&got, &want),
        "reader: {got:?}\nTensorBoard: {want:?}"
    );
}

/// A file's record payloads, each CRC checked by `read_events` first, the wall time (bytes 1..9:
/// `Event.wall_time` is written first) zeroed.
fn payloads_without_wall_time(path: &Path) -> Vec<Vec<u8>> {
    read_events(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
        let mut data = rest[12..12 + n].to_vec();
        assert_eq!(data[0], 0x09, "wall_time (field 1, fixed64) first");
        data[1..9].fill(0);
        out.push(data);
        rest = &rest[16 + n..];
    }
    out
}

#[test]
fn the_current_writer_reproduces_the_fixture_records() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rewritten = Vec::new();
    for (i, name) in fixture_json().0.iter().enumerate() {
        let path = fixture().join("tb").join(name);
        let events = read_events(&path).unwrap();
        let resume = events
            .iter()
            .find(|e| e.session_start)
            .map(|e| e.step as u64);
        let mut w = EventWriter::create(&tmp.path().join(i.to_string()), resume).unwrap();
        for e in events.iter().filter(|e| !e.scalars.is_empty()) {
            let row = e
                .scalars
                .iter()
                .map(|(t, v)| (t.clone(), *v as f64))
                .collect();
            w.write_scalars(e.step as u64, &row).unwrap();
        }
        assert_eq!(
            payloads_without_wall_time(w.path()),
            payloads_without_wall_time(&path),
            "{name}"
        );
        rewritten.extend(read_events(w.path()).unwrap());
    }
    assert!(same_points(
        &as_tensorboard_reads(&rewritten),
        &fixture_json().1
    ));
}
