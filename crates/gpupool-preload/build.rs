//! Links `libgpupool.so` with `-Bsymbolic`: the library's calls to its own exported functions
//! bind inside it, never to another library's function of the same name.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
}
