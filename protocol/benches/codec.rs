//! Placeholder replaced by the codec benches.
fn main() {}
