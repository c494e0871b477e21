//! Every fuzz target's body over its committed seed corpus and every past finding, on every
//! `cargo test`: the targets keep compiling, and an input that once crashed one stays fixed.
//! A few hundred small files: well under a second.

use std::path::{Path, PathBuf};

fn inputs(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_target_runs_clean_over_its_seed_corpus_and_past_findings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, body) in keyguard_fuzz::TARGETS {
        let seeds = inputs(&root.join("corpus").join(name));
        assert!(
            !seeds.is_empty(),
            "fuzz/corpus/{name} has no seeds (run python3 fuzz/make_seeds.py)"
        );
        for file in seeds.iter().chain(inputs(&root.join("findings").join(name)).iter()) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            body(&data);
        }
    }
}

#[test]
fn the_seeds_reach_past_the_first_parse() {
    // A corpus of inputs the parser rejects at once would fuzz only the error path: each
    // target's seeds include inputs the production parser accepts.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let accepted = |name: &str, accepts: &dyn Fn(&[u8]) -> bool| {
        let seeds = inputs(&root.join("corpus").join(name));
        let n = seeds
            .iter()
            .filter(|f| accepts(&std::fs::read(f).unwrap_or_default()))
            .count();
        assert!(n > 0, "no seed of {name} is accepted by its parser");
    };
    accepted("envelope", &|d| {
        functions_runtime::decode_envelope(d, keyguard_fuzz::EVENT_BINDING)
            .is_ok_and(|(trigger, _)| keyguard_core::parse_event(&trigger).is_ok())
    });
    accepted("event", &|d| {
        serde_json::from_slice(d)
            .is_ok_and(|v| keyguard_core::parse_delivery(&v).is_ok_and(|e| e.iter().any(Result::is_ok)))
    });
    accepted("resource_id", &|d| {
        std::str::from_utf8(d).is_ok_and(|t| keyguard_core::ResourceId::parse(t).is_ok())
    });
    accepted("keyref", &|d| {
        std::str::from_utf8(d).is_ok_and(|t| keyguard_core::KeyRef::from_key_uri(t, None).is_ok())
    });
    accepted("config", &|d| {
        std::str::from_utf8(d).is_ok_and(|t| keyguard_core::Config::from_toml_str(t, "seed.toml").is_ok())
    });
    accepted("az_export", &|d| {
        keyguard_core::inventory::parse_export_bytes(d, "seed.json").is_ok_and(|i| !i.items.is_empty())
    });
}
