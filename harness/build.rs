//! Bake an rpath to the libtorch lib dir so binaries and tests run without LD_LIBRARY_PATH. Only
//! libtorch_cpu is linked: libtorch's CUDA backend (and the CUDA libraries it pulls in, ≈ 100 MiB
//! resident) is loaded at run time by `harness::runtime::load_cuda`, on machines with an NVIDIA
//! driver.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
