fn main() {
    eprintln!("usage: iscsictl [-s socket] command [argument ...]");
    std::process::exit(1);
}
