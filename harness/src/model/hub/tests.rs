//! Hub ids against fake caches in temp dirs, and a download from a local mock of the Hub's HTTP API.
use super::*;
use crate::model::{load_model, presets::preset, save_hf_dir};
#[cfg(feature = "hub-download")]
use std::io::{BufRead, BufReader, Read, Write};
use tch::{Device, Kind};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A tiny model as a HF directory at `dir`.
fn write_model(dir: &Path) {
    let m = load_model("tiny-qwen3", Kind::Float, Device::Cpu, 3).unwrap();
    save_hf_dir(
        &preset("tiny-qwen3").unwrap(),
        m.named_parameters(),
        dir,
        Kind::Float,
        5 << 30,
    )
    .unwrap();
}

/// `<cache>/models--Org--Tiny` with `refs/<branch>` → `COMMIT` and the model in its snapshot.
fn fake_cache(cache: &Path, branch: &str) -> PathBuf {
    let repo = cache.join("models--Org--Tiny");
    let snap = repo.join("snapshots").join(COMMIT);
    write_model(&snap);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join(branch), COMMIT).unwrap();
    snap
}

#[test]
fn hub_ids_parse() {
    let id = HubId::parse("Qwen/Qwen3-8B").unwrap();
    assert_eq!(
        (id.repo.as_str(), id.revision.as_str()),
        ("Qwen/Qwen3-8B", "main")
    );
    let id = HubId::parse("Qwen/Qwen3-8B@v1.0").unwrap();
    assert_eq!(id.revision, "v1.0");
    for bad in [
        "tiny-qwen3",
        "./x",
        "../a/b",
        "/abs/path",
        "a/b/c",
        "a/",
        "/b",
        "a--b/c",
        "a/b@",
        "a/b@../../x",
        "~/m",
    ] {
        assert!(HubId::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn a_cached_hub_id_resolves_to_its_snapshot_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = fake_cache(tmp.path(), "main");
    assert_eq!(resolve_in("Org/Tiny", tmp.path(), None).unwrap(), snap);
    // A commit names its snapshot without a ref.
    assert_eq!(
        resolve_in(&format!("Org/Tiny@{COMMIT}"), tmp.path(), None).unwrap(),
        snap
    );
    let m = load_model(snap.to_str().unwrap(), Kind::Float, Device::Cpu, 0).unwrap();
    assert_eq!(m.cfg.hidden_size, 128);
}

#[test]
fn a_branch_resolves_through_its_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = fake_cache(tmp.path(), "dev");
    assert_eq!(resolve_in("Org/Tiny@dev", tmp.path(), None).unwrap(), snap);
    let e = resolve_in("Org/Tiny", tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no refs/main"), "{e}");
}

#[test]
fn a_missing_hub_id_names_the_id_and_the_cache_path() {
    let tmp = tempfile::tempdir().unwrap();
    let e = resolve_in("Qwen/Qwen3-8B", tmp.path(), None)
        .unwrap_err()
        .to_string();
    let searched = tmp.path().join("models--Qwen--Qwen3-8B");
    assert!(e.contains("`Qwen/Qwen3-8B`"), "{e}");
    assert!(e.contains(&searched.display().to_string()), "{e}");
    assert!(e.contains("huggingface-cli download Qwen/Qwen3-8B"), "{e}");
}

#[test]
fn an_incomplete_snapshot_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = fake_cache(tmp.path(), "main");
    std::fs::remove_file(snap.join("config.json")).unwrap();
    let e = resolve_in("Org/Tiny", tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no config.json") && e.contains(COMMIT),
        "{e}"
    );
}

#[test]
fn a_missing_path_is_a_missing_directory_not_a_preset() {
    let tmp = tempfile::tempdir().unwrap();
    let e = resolve_in("./models/nope", tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no directory ./models/nope (relative to "),
        "{e}"
    );
    assert!(!e.contains("preset"), "{e}");
}

#[test]
fn local_directories_win_over_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_model(&dir);
    let spec = dir.to_str().unwrap();
    assert_eq!(resolve_in(spec, tmp.path(), None).unwrap(), dir);
    assert!(matches!(locate(spec).unwrap(), ModelSource::Dir(d) if d == dir));
    assert!(matches!(
        locate("tiny-qwen3").unwrap(),
        ModelSource::Preset(_)
    ));
    let e = locate("tiny-qwen9").err().unwrap().to_string();
    assert!(e.contains("unknown model preset"), "{e}");
}

#[test]
fn only_model_files_are_downloaded() {
    for f in [
        "config.json",
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "merges.txt",
    ] {
        assert!(wanted(f), "{f}");
    }
    for f in [
        "pytorch_model.bin",
        "README.md",
        "onnx/model.onnx",
        ".gitattributes",
    ] {
        assert!(!wanted(f), "{f}");
    }
}

#[cfg(feature = "hub-download")]
/// Serves `files` of `Org/Tiny` at `COMMIT` the way the Hub's HTTP API does (repo info, ranged
/// `resolve/` downloads with `ETag` / `X-Repo-Commit`), on a loopback port, for at most 60 s.
fn mock_hub(files: Vec<(String, Vec<u8>)>) -> (String, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut served = 0;
        while std::time::Instant::now() < deadline && served < 200 {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    if !answer(stream, &files) {
                        break;
                    }
                    served += 1;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        served
    });
    (format!("http://{addr}"), handle)
}

#[cfg(feature = "hub-download")]
/// Answer one request; false on the `/stop` request.
fn answer(stream: std::net::TcpStream, files: &[(String, Vec<u8>)]) -> bool {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    reader.read_line(&mut request).unwrap();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().trim_start_matches("bytes=").to_string());
            }
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut out = stream;
    let mut reply = |status: &str, headers: String, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
            body.len()
        );
        out.write_all(head.as_bytes()).unwrap();
        out.write_all(body).unwrap();
    };
    if path == "/stop" {
        reply("200 OK", String::new(), b"");
        return false;
    }
    if path == "/api/models/Org/Tiny/revision/main" {
        let mut siblings: Vec<_> = files
            .iter()
            .map(|(n, _)| serde_json::json!({ "rfilename": n }))
            .collect();
        siblings.push(serde_json::json!({ "rfilename": "README.md" }));
        let body = serde_json::json!({ "siblings": siblings, "sha": COMMIT }).to_string();
        reply(
            "200 OK",
            "Content-Type: application/json\r\n".into(),
            body.as_bytes(),
        );
        return true;
    }
    let file = path
        .strip_prefix("/Org/Tiny/resolve/main/")
        .and_then(|f| files.iter().find(|(n, _)| n == f));
    let Some((name, data)) = file else {
        reply("404 Not Found", String::new(), b"");
        return true;
    };
    let (a, b) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((a, b)) => (
            a.parse::<usize>().unwrap_or(0),
            b.parse::<usize>()
                .map_or(data.len() - 1, |b| b.min(data.len() - 1)),
        ),
        None => (0, data.len() - 1),
    };
    let headers = format!(
        "ETag: \"blob-{name}\"\r\nX-Repo-Commit: {COMMIT}\r\nContent-Range: bytes {a}-{b}/{}\r\n",
        data.len()
    );
    reply("206 Partial Content", headers, &data[a..=b]);
    true
}

#[cfg(feature = "hub-download")]
#[test]
fn downloads_only_when_asked_then_resolves_offline() {
    let src = tempfile::tempdir().unwrap();
    write_model(src.path());
    std::fs::write(src.path().join("tokenizer.json"), "{}").unwrap();
    let files: Vec<(String, Vec<u8>)> = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(src.path().join(f)).unwrap()))
        .collect();
    let (endpoint, server) = mock_hub(files.clone());
    let cache = tempfile::tempdir().unwrap();

    // Offline (the default): not in the cache is an error, and nothing is fetched.
    assert!(resolve_in("Org/Tiny", cache.path(), None).is_err());
    let snap = resolve_in("Org/Tiny", cache.path(), Some(&endpoint)).unwrap();
    assert_eq!(
        snap,
        cache
            .path()
            .join("models--Org--Tiny/snapshots")
            .join(COMMIT)
    );
    for (name, data) in &files {
        assert_eq!(&std::fs::read(snap.join(name)).unwrap(), data, "{name}");
    }
    assert!(
        !snap.join("README.md").exists(),
        "only model files are fetched"
    );
    // Now cached: resolves offline, and loads.
    assert_eq!(resolve_in("Org/Tiny", cache.path(), None).unwrap(), snap);
    load_model(snap.to_str().unwrap(), Kind::Float, Device::Cpu, 0).unwrap();

    let mut stop = std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
    stop.write_all(b"GET /stop HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = stop.read_to_end(&mut sink);
    assert!(server.join().unwrap() > 3);
}

#[cfg(not(feature = "hub-download"))]
#[test]
fn without_the_download_feature_asked_downloads_say_how_to_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let e = resolve_in("Org/Tiny", tmp.path(), Some("http://127.0.0.1:9"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("huggingface-cli download Org/Tiny"), "{e}");
    assert!(e.contains("--features hub-download"), "{e}");
}
