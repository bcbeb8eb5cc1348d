//! ARCHITECTURE.md matches the code: every repository path it names in
//! backquotes (or in its diagrams) exists.

use std::path::Path;

/// Candidate paths: words made of path characters that contain a `/` and
/// start with a top-level folder of the repository.
fn named_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c))) {
        let word = word.trim_end_matches(['.', ',']);
        let Some((top, _)) = word.split_once('/') else {
            continue;
        };
        if top.is_empty() || !Path::new(env!("CARGO_MANIFEST_DIR")).join(top).is_dir() {
            continue;
        }
        paths.push(word.to_owned());
    }
    paths.sort();
    paths.dedup();
    paths
}

#[test]
fn every_path_architecture_md_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let paths = named_paths(&text);
    assert!(
        paths.len() >= 20,
        "ARCHITECTURE.md names too few paths to check: {paths:?}"
    );
    let missing: Vec<_> = paths
        .iter()
        .filter(|path| !root.join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing paths: {missing:?}"
    );
}

#[test]
fn a_path_that_does_not_exist_is_caught() {
    let paths = named_paths("see `actors/src/no_such_room.rs` and `messages/src/wire.rs`.");
    assert_eq!(
        paths,
        vec!["actors/src/no_such_room.rs", "messages/src/wire.rs"]
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!root.join(&paths[0]).exists());
}
