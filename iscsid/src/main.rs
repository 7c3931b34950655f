fn main() {
    eprintln!("usage: iscsid [-dv] [-n device] [-s socket]");
    std::process::exit(1);
}
