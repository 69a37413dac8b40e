//! Which librdkafka properties hold secrets: those librdkafka itself marks
//! sensitive (`_RK_SENSITIVE` in `rdkafka_conf.c`, which its own config
//! dumps redact), as of the librdkafka the `rdkafka-sys` crate bundles. A
//! property is judged by what it is, not by the words in its name
//! (`sasl.oauthbearer.config` holds a client secret and names none);
//! the word match stays only as a fallback for what this list lacks (a
//! property of a newer librdkafka). A test reads the bundled
//! `rdkafka_conf.c` and fails when the list falls behind it.

/// librdkafka's sensitive properties (2.12.1).
pub const LIBRDKAFKA_SENSITIVE: &[&str] = &[
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

/// Words that suggest a secret in a property name librdkafka does not know.
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "key", "jaas"];

/// Whether the value of librdkafka property `name` must never be shown.
#[must_use]
pub fn is_sensitive(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    LIBRDKAFKA_SENSITIVE.contains(&name.as_str()) || SECRET_WORDS.iter().any(|w| name.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_properties_without_a_secret_word_are_still_sensitive() {
        for name in [
            "sasl.oauthbearer.config",
            "sasl.username",
            "ssl.ca.pem",
            "ssl_key",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        assert!(is_sensitive("SASL.PASSWORD"));
        assert!(is_sensitive("some.future.api.token"), "the fallback");
        for name in [
            "security.protocol",
            "sasl.mechanisms",
            "bootstrap.servers",
            "client.id",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    /// The bundled librdkafka's `rdkafka_conf.c`, from cargo's registry
    /// sources (where `rdkafka-sys` was built from). Fails, never skips,
    /// when it cannot be found.
    fn bundled_conf_c() -> String {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("Cargo.lock of the workspace");
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"rdkafka-sys\""))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .expect("rdkafka-sys in Cargo.lock")
            .to_owned();
        let home = std::env::var("CARGO_HOME").map_or_else(
            |_| std::path::PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cargo"),
            std::path::PathBuf::from,
        );
        let src = home.join("registry").join("src");
        for index in std::fs::read_dir(&src).expect("cargo registry sources") {
            let path = index
                .expect("registry entry")
                .path()
                .join(format!("rdkafka-sys-{version}"))
                .join("librdkafka/src/rdkafka_conf.c");
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
        }
        panic!(
            "rdkafka_conf.c of rdkafka-sys {version} not found under {}",
            src.display()
        );
    }

    #[test]
    fn every_property_librdkafka_marks_sensitive_is_in_the_list() {
        let conf = bundled_conf_c();
        // {_RK_GLOBAL | _RK_SENSITIVE, "name", ...} with the name possibly
        // on the next line.
        let mut marked = Vec::new();
        for entry in conf.split("{_RK_").skip(1) {
            let Some((scope, rest)) = entry.split_once(',') else {
                continue;
            };
            if !scope.contains("_RK_SENSITIVE") {
                continue;
            }
            let name = rest
                .trim_start()
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'));
            if let Some((name, _)) = name {
                marked.push(name.to_owned());
            }
        }
        assert!(marked.len() >= 10, "parsed too few entries: {marked:?}");
        for name in &marked {
            assert!(
                LIBRDKAFKA_SENSITIVE.contains(&name.as_str()),
                "librdkafka marks {name} sensitive: add it to LIBRDKAFKA_SENSITIVE"
            );
        }
        for name in LIBRDKAFKA_SENSITIVE {
            assert!(
                marked.iter().any(|m| m == name),
                "{name} is no longer marked sensitive"
            );
        }
    }
}
