//! What this binary is: its version, the git commit it was built from and
//! the Pingora version it links, as `--version` prints them and
//! `holepunch_build_info` labels them. The commit and Pingora version come
//! from build.rs (git or `NOMAD_HOLEPUNCH_COMMIT`, and Cargo.lock). Pure.

/// The package version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit, full, or `unknown` when the build had neither git nor
/// `NOMAD_HOLEPUNCH_COMMIT` (a container build without the REVISION
/// build argument).
pub const COMMIT: &str = env!("NOMAD_HOLEPUNCH_BUILD_COMMIT");

/// The `pingora` version in Cargo.lock.
pub const PINGORA: &str = env!("NOMAD_HOLEPUNCH_BUILD_PINGORA");

/// The line `--version` prints.
pub fn version_line() -> String {
    format!("nomad-holepunch {VERSION} (commit {COMMIT}, pingora {PINGORA})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `[[package]]` of Cargo.lock named `name`, as its version.
    fn locked(name: &str) -> Vec<String> {
        let lock = include_str!("../Cargo.lock");
        let mut versions = Vec::new();
        let mut current = None;
        for line in lock.lines() {
            if line == "[[package]]" {
                current = None;
            } else if let Some(n) = line.strip_prefix("name = ") {
                current = Some(n.trim_matches('"').to_string());
            } else if let Some(v) = line.strip_prefix("version = ") {
                if current.as_deref() == Some(name) {
                    versions.push(v.trim_matches('"').to_string());
                }
            }
        }
        versions
    }

    #[test]
    fn pingora_is_the_locked_version_of_every_pingora_crate() {
        assert_eq!(locked("pingora"), [PINGORA]);
        // The crates that do the work are released together with `pingora`.
        for name in ["pingora-core", "pingora-proxy", "pingora-prometheus"] {
            assert_eq!(locked(name), [PINGORA], "{name}");
        }
    }

    #[test]
    fn the_commit_is_a_commit_id_or_unknown() {
        assert!(
            COMMIT == "unknown"
                || ((7..=64).contains(&COMMIT.len())
                    && COMMIT
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
            "{COMMIT:?}"
        );
    }

    #[test]
    fn the_version_line_keeps_the_old_prefix_and_names_all_three() {
        // Scripts that read "nomad-holepunch X.Y.Z" from the first two
        // words keep working.
        let line = version_line();
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[..2], ["nomad-holepunch", env!("CARGO_PKG_VERSION")]);
        assert_eq!(
            words[2..],
            [
                "(commit",
                &format!("{COMMIT},"),
                "pingora",
                &format!("{PINGORA})")
            ]
        );
    }
}
