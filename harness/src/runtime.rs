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

/// Load libtorch's CUDA backend (`libtorch_cuda.so`, found through the binary's rpath or
/// `LD_LIBRARY_PATH`) once, when the machine has an NVIDIA driver or `HARNESS_LOAD_CUDA=1`; whether
/// it is loaded. The binaries do not link it: with it come cuBLAS, cuDNN, NCCL and the CUDA runtime,
/// about 100 MiB resident and a slower start for every CPU run and test process, which never use
/// them. Every CUDA query in the crate goes through [`cuda_device_count`], which calls this first.
pub fn load_cuda() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| wants_cuda() && dlopen_global("libtorch_cuda.so"))
}

/// An NVIDIA driver is installed (Linux, WSL), or `HARNESS_LOAD_CUDA=1`.
fn wants_cuda() -> bool {
    let driver = ["/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    driver || std::env::var("HARNESS_LOAD_CUDA").is_ok_and(|v| v == "1")
}

/// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`; a failure is reported on stderr (the run then sees no
/// CUDA device and says so where one is asked for).
fn dlopen_global(name: &str) -> bool {
    let c_name = std::ffi::CString::new(name).expect("library name without NUL");
    // SAFETY: a NUL-terminated name; loading a shared library runs its initialisers (libtorch's
    // CUDA hooks registering themselves), which is what is wanted here.
    let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local C string or null right after the failed call.
        let err = unsafe { libc::dlerror() };
        let why = if err.is_null() {
            "unknown error".to_string()
        } else {
            unsafe { std::ffi::CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned()
        };
        eprintln!("warning: CUDA unavailable: could not load {name}: {why}");
    }
    !handle.is_null()
}

/// Number of visible CUDA devices (0 without libtorch's CUDA backend).
pub fn cuda_device_count() -> usize {
    load_cuda();
    tch::Cuda::device_count().max(0) as usize
}

/// Check that a CUDA device exists before anything is allocated on it.
pub fn ensure_device(device: Device) -> Result<()> {
    if let Device::Cuda(n) = device {
        let count = cuda_device_count();
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

/// Let a closed stdout end the process quietly (`harness validate grid.yaml | head`), as it does
/// for other Unix tools: Rust ignores SIGPIPE, so every `println!` after the reader left would
/// panic. The harness writes to no pipe of its own (child processes log to files, sockets use
/// `MSG_NOSIGNAL`), so only stdout and stderr are affected.
pub fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resets one signal's disposition to the default, before any other thread runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Keep freed memory in the process instead of handing it back to the OS after every step: a
/// training step frees and reallocates the same few hundred MiB of activations, and glibc's default
/// trimming turns that into page faults (measured: about a tenth of a tiny-model step's CPU time).
/// The price is up to 1 GiB of freed memory in the resident set; `HARNESS_MALLOC_DEFAULTS=1` keeps
/// glibc's defaults (benches/memory/measure.sh sets it, so that peak RSS tracks live tensors).
pub fn tune_allocator() {
    if std::env::var_os("HARNESS_MALLOC_DEFAULTS").is_some_and(|v| v == "1") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

extern "C" {
    fn harness_inference_mode_enter() -> *mut std::ffi::c_void;
    fn harness_inference_mode_exit(guard: *mut std::ffi::c_void);
}

/// LibTorch's `InferenceMode` while alive (`csrc/inference_mode.cpp`): no gradients, and ops skip
/// the autograd and view-tracking layers (the same kernels, so the same numbers, less per-op
/// overhead than `tch::no_grad_guard`). Tensors made inside are *inference tensors*: autograd
/// refuses to save them for backward, so copy what leaves the scope (`Tensor::copy` outside it).
pub struct InferenceMode(*mut std::ffi::c_void);

impl InferenceMode {
    pub fn enter() -> Self {
        // SAFETY: allocates a guard object that only touches this thread's dispatch state.
        InferenceMode(unsafe { harness_inference_mode_enter() })
    }
}

impl Drop for InferenceMode {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `enter` on this thread (the type is !Send) and is freed once.
        unsafe { harness_inference_mode_exit(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binaries must not link libtorch_cuda (≈ 230 MiB more resident on a CPU run): it is in
    /// the process exactly when `load_cuda` loaded it, and without a driver it is not loaded.
    #[test]
    fn cuda_backend_is_in_the_process_only_when_loaded() {
        let loaded = load_cuda();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert_eq!(maps.contains("libtorch_cuda.so"), loaded);
        assert_eq!(
            loaded,
            wants_cuda(),
            "a driver is present but libtorch_cuda did not load"
        );
        if !loaded {
            assert_eq!(cuda_device_count(), 0);
        }
    }
}
