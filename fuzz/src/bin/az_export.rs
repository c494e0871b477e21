//! AFL++ entry point; the body is [`keyguard_fuzz::az_export`], which `cargo test` also runs over the corpus.
fn main() {
    afl::fuzz!(|data: &[u8]| keyguard_fuzz::az_export(data));
}
