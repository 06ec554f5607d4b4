//! What sockdump's test crates share.
//!
//! Privileged tests (loading eBPF programs, mount namespaces, other users)
//! run whenever the tests run as root, and a failure there is a failure.
//! Only without root do they skip, and they say so. Container tests run
//! their own Docker engine ([`DockerEngine`]).

mod docker;

pub use docker::DockerEngine;

/// Whether the privileged test `test` skips, printing why when it does.
pub fn skip_unless_root(test: &str) -> bool {
    match skip_reason(test, nix::unistd::geteuid().is_root()) {
        Some(reason) => {
            eprintln!("{reason}");
            true
        }
        None => false,
    }
}

/// The line a skipped test prints; None: it runs.
fn skip_reason(test: &str, root: bool) -> Option<String> {
    (!root)
        .then(|| format!("SKIPPED {test}: needs root to load eBPF programs, mount or switch users (sudo -E)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_and_anyone_else_skips_saying_which_test_and_why() {
        assert_eq!(skip_reason("some_test", true), None);
        let reason = skip_reason("some_test", false).unwrap();
        assert!(reason.starts_with("SKIPPED some_test: needs root"), "{reason}");
    }
}
