//! What a valid configuration may still leave open, said before it bites: `keyguard config
//! validate` prints these as warnings (the configuration is accepted either way).

use crate::config::{Config, Requirement};

/// One warning per weakness found, in profile order.
pub fn advisories(config: &Config) -> Vec<String> {
    config
        .profiles
        .iter()
        .filter(|p| p.require == Requirement::Cmk && p.allowed_vaults.is_empty() && !config.settings.estate_check)
        .map(|p| {
            format!(
                "profile {} requires customer-managed keys but lists no allowed_vaults, and estate_check is off: a \
                 resource pointed at a key in a vault you do not control is reported (key-changed), not treated as \
                 drift; list your vaults in allowed_vaults or turn estate_check back on",
                p.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, "keyguard.toml").unwrap()
    }

    #[test]
    fn a_cmk_profile_with_neither_allowed_vaults_nor_the_estate_check_is_warned_about() {
        let checked = config("[[profile]]\nname = \"open\"\nrequire = \"cmk\"\nmode = \"enforce\"\n");
        assert!(advisories(&checked).is_empty(), "the estate check guards it by default");
        let open = config(
            "[settings]\nestate_check = false\n[[profile]]\nname = \"open\"\nrequire = \"cmk\"\nmode = \"enforce\"\n",
        );
        let warnings = advisories(&open);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("profile open") && warnings[0].contains("allowed_vaults"));

        let listed = config(
            "[[profile]]\nname = \"listed\"\nrequire = \"cmk\"\nmode = \"enforce\"\nallowed_vaults = [\"https://kv-prod.vault.azure.net\"]\n",
        );
        assert!(advisories(&listed).is_empty());
        let mmk = config("[[profile]]\nname = \"mmk\"\nrequire = \"mmk\"\nmode = \"enforce\"\n");
        assert!(advisories(&mmk).is_empty(), "no key to swap");
    }
}
