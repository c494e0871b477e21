//! Prints the sample findings in one format: `cargo run -p keyguard-report --example render_sample -- table`.

use keyguard_report::{Format, render, sample};

fn main() {
    let format = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "table".to_string())
        .parse::<Format>()
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    let mut ctx = sample::context();
    ctx.colour = std::env::var_os("COLOUR").is_some();
    print!("{}", render(&sample::findings(), format, &ctx));
}
