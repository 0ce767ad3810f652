//! Atomic file writes (temp file + rename) and pid lock files.
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically: readers see the old file or the new one, never a part.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Like [`atomic_write`], with the content produced by `write` into the temp file.
pub fn atomic_write_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.flush()?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// This machine's host name (`""` when it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // An exited process that nobody reaped yet (a zombie) still answers: it holds nothing.
    exists && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    // `/proc/<pid>/stat`: `pid (comm) state …`; comm may contain spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(false)
}

/// A lock file holding the owner's pid, removed on drop. A lock whose pid is gone is stale and
/// taken over.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
}

impl PidLock {
    /// Take the lock or say who holds it.
    pub fn acquire(path: &Path) -> Result<PidLock> {
        let me = std::process::id();
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    writeln!(f, "{me}").map_err(|e| Error::io(path, e))?;
                    return Ok(PidLock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid != me && pid_alive(pid) => {
                            return Err(Error::Input(format!(
                                "{} is locked by a running harness process (pid {pid}); \
                                 wait for it or stop it",
                                path.display()
                            )));
                        }
                        _ => {
                            // Stale (dead owner or unreadable): take it over.
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::Input(format!(
            "could not take the lock {}",
            path.display()
        )))
    }

    /// Retry [`acquire`](Self::acquire) for up to `wait` while a live process holds the lock.
    pub fn acquire_waiting(path: &Path, wait: std::time::Duration) -> Result<PidLock> {
        let t0 = std::time::Instant::now();
        loop {
            match Self::acquire(path) {
                Err(Error::Input(_)) if t0.elapsed() < wait => {
                    std::thread::sleep(std::time::Duration::from_millis(200))
                }
                r => return r,
            }
        }
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(d.path().join("a")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp files left");
    }

    #[test]
    fn lock_refuses_live_holder_and_takes_stale() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".lock");
        // Held by a live process (pid 1 always exists).
        std::fs::write(&p, "1\n").unwrap();
        let e = PidLock::acquire(&p).unwrap_err().to_string();
        assert!(e.contains("pid 1"), "{e}");
        // A dead pid is stale.
        std::fs::write(&p, format!("{}\n", i32::MAX - 7)).unwrap();
        let l = PidLock::acquire(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(l);
        assert!(!p.exists());
    }
}
