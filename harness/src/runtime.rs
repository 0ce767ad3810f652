//! Process-global libtorch settings (device parsing, seeds, threads).
use crate::{Error, Result};
use tch::{Device, Kind};

/// Parse `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Device::Cuda(n)),
            _ => Err(Error::Input(format!(
                "unknown device `{s}` (expected cpu, cuda or cuda:N)"
            ))),
        },
    }
}

/// Check that a CUDA device exists before anything is allocated on it.
pub fn ensure_device(device: Device) -> Result<()> {
    if let Device::Cuda(n) = device {
        let count = tch::Cuda::device_count() as usize;
        if n >= count {
            return Err(Error::Input(format!(
                "device cuda:{n} requested but {count} CUDA device(s) are visible"
            )));
        }
    }
    Ok(())
}

/// Parse a compute dtype name.
pub fn parse_dtype(s: &str) -> Result<Kind> {
    match s {
        "fp32" | "float32" | "f32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "fp16" | "float16" | "f16" | "half" => Ok(Kind::Half),
        _ => Err(Error::Input(format!(
            "unknown dtype `{s}` (expected fp32, bf16 or fp16)"
        ))),
    }
}

pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "fp32",
        Kind::BFloat16 => "bf16",
        Kind::Half => "fp16",
        Kind::Double => "fp64",
        _ => "other",
    }
}

static DEFAULT_DEVICE: std::sync::Mutex<Option<Device>> = std::sync::Mutex::new(None);

/// Device that runs use: set by the CLI from `--device`, else `HARNESS_DEVICE` (what the grid
/// runner passes to its child processes), else CPU.
pub fn default_device() -> Device {
    if let Some(d) = *DEFAULT_DEVICE.lock().unwrap() {
        return d;
    }
    std::env::var("HARNESS_DEVICE")
        .ok()
        .and_then(|s| parse_device(&s).ok())
        .unwrap_or(Device::Cpu)
}

pub fn set_default_device(d: Device) {
    *DEFAULT_DEVICE.lock().unwrap() = Some(d);
}

/// Keep freed memory in the process instead of handing it back to the OS after every step: a
/// training step frees and reallocates the same few hundred MiB of activations, and glibc's default
/// trimming turns that into page faults (measured: about a tenth of a tiny-model step's CPU time).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
