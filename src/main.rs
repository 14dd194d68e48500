//! The `smsmax` command line.

fn main() {
    println!("smsmax {}", smsmax::VERSION);
}
