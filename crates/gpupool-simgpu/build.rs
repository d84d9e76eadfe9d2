//! Links the simulated driver with `-Bsymbolic`: its own calls between exported functions (for
//! example the thunk the optimiser makes when two exports share one body, such as
//! `cuMemAllocAsync_ptsz` and `cuMemAllocAsync`) must stay inside the library, as in NVIDIA's
//! driver, and never land in a preloaded interposer such as `libgpupool.so`.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
}
