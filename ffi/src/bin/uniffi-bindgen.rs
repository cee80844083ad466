//! Generates the Swift, Kotlin and Python bindings from the compiled library (library mode).

fn main() {
    uniffi::uniffi_bindgen_main()
}
