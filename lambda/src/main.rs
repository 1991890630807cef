//! The fan-out Lambda: normalizes Secrets Manager events and routes them to many clusters'
//! queues. A placeholder until its issue (#4) lands; it refuses to run rather than pretend.

fn main() {
    eprintln!("secret-bridge-lambda is not implemented yet (issue #4)");
    std::process::exit(2);
}
