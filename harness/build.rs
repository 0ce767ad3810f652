//! Bake an rpath to the libtorch lib dir so binaries and tests run without LD_LIBRARY_PATH. Only
//! libtorch_cpu is linked: libtorch's CUDA backend (and the CUDA libraries it pulls in, ≈ 100 MiB
//! resident) is loaded at run time by `harness::runtime::load_cuda`, on machines with an NVIDIA
//! driver. Also compiles `csrc/`, the C++ that tch does not expose (against libtorch's headers).
use std::path::Path;

fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not report libtorch's lib dir (DEP_TCH_LIBTORCH_LIB)");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=csrc");
    let include = Path::new(&lib).join("../include");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // No FMA contraction: the fused ops must round every product as the tensor ops do.
        .flag("-ffp-contract=off")
        .flag("-O3")
        .file("csrc/inference_mode.cpp")
        .file("csrc/rope.cpp")
        .file("csrc/rms_norm.cpp")
        .file("csrc/adamw.cpp")
        .warnings(false)
        .compile("harness_csrc");
}
