mod format;
mod units;

fn main() {}
