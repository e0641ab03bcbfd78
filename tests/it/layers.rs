//! The layers of `src/` stay one-way: a module uses its own layer and the layers `lib.rs`
//! lists before it, never one listed after. tract gets this from its crate boundaries; ptxd is
//! one crate, so this test reads every `crate::` path instead.

use std::path::{Path, PathBuf};

use crate::common::root;

/// The layers in `lib.rs`'s order: its `pub mod` lines.
fn layers(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// Each use of a later layer in one file: "file:line uses crate::x (layer ...)".
fn upward_uses(file: &str, layer: &str, text: &str, order: &[String]) -> Vec<String> {
    let rank = |name: &str| order.iter().position(|l| l == name);
    let own = rank(layer).unwrap_or_else(|| panic!("{file}: its layer {layer} is not in lib.rs"));
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // comments name other layers freely (doc links, "see crate::x")
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            match rank(&name) {
                Some(r) if r > own => found.push(format!(
                    "{file}:{} uses crate::{name} (layer {}) from layer {} ({layer})",
                    n + 1,
                    r + 1,
                    own + 1
                )),
                Some(_) => {}
                None => found.push(format!("{file}:{}: crate::{name} is not a layer in lib.rs", n + 1)),
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = root().join("src");
    let order = layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(
        order.len() >= 8,
        "lib.rs lists its layers as `pub mod` lines: {order:?}"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        // lib.rs declares the layers; main.rs and cli/ are the binary, above them all
        if rel == Path::new("lib.rs") || rel == Path::new("main.rs") || rel.starts_with("cli") {
            continue;
        }
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let layer = first.trim_end_matches(".rs").to_string();
        seen.insert(layer.clone());
        let text = std::fs::read_to_string(path).unwrap();
        upward.extend(upward_uses(&rel.display().to_string(), &layer, &text, &order));
    }
    assert!(upward.is_empty(), "upward uses:\n{}", upward.join("\n"));
    let declared: std::collections::BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        seen, declared,
        "every folder of src/ is a layer in lib.rs, and every layer a folder"
    );
}

#[test]
fn an_upward_use_is_caught_and_a_comment_is_not() {
    let order: Vec<String> = ["base", "model", "daemon"].map(String::from).into();
    let text = "//! see crate::daemon\nuse crate::base::worker;\nuse crate::daemon::Daemon; // upward\n\
                fn f() { crate::model::infer::run() }\n";
    assert_eq!(
        upward_uses("model/x.rs", "model", text, &order),
        ["model/x.rs:3 uses crate::daemon (layer 3) from layer 2 (model)"]
    );
    assert_eq!(
        upward_uses("base/y.rs", "base", "let m = crate::model::Manifest::load();", &order),
        ["base/y.rs:1 uses crate::model (layer 2) from layer 1 (base)"]
    );
    assert!(upward_uses("daemon/z.rs", "daemon", text, &order).is_empty());
}
