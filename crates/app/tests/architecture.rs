//! Dependencies point inward: app → adapters-* → application → ports → domain.
//! Read from `cargo metadata`, so a new dependency that breaks the rule fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Normal (non-dev) dependencies of every workspace crate, by crate name.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

fn assert_only(deps: &BTreeMap<String, BTreeSet<String>>, krate: &str, allowed: &[&str]) {
    let extra: Vec<_> = deps[krate]
        .iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "{krate} must stay free of IO and frameworks, but depends on {extra:?}"
    );
}

#[test]
fn domain_and_ports_have_no_io_or_framework_dependencies() {
    let deps = workspace_dependencies();
    assert_only(
        &deps,
        "nexus-domain",
        &[
            "chrono",
            "deunicode",
            "ipnet",
            "serde",
            "serde_json",
            "thiserror",
            "url",
            "uuid",
        ],
    );
    assert_only(
        &deps,
        "nexus-ports",
        &[
            "nexus-domain",
            "anyhow",
            "chrono",
            "mockall",
            "serde",
            "serde_json",
            "thiserror",
            // Channel receivers and a task-local only (features `sync`, `rt`): no IO.
            "tokio",
            "uuid",
        ],
    );
}

#[test]
fn crates_depend_only_inward() {
    let deps = workspace_dependencies();
    let ours = |k: &str| -> BTreeSet<String> {
        deps[k]
            .iter()
            .filter(|d| d.starts_with("nexus-"))
            .cloned()
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| (*s).to_owned()).collect() };
    assert!(ours("nexus-domain").is_empty());
    assert!(ours("nexus-ports").is_subset(&set(&["nexus-domain"])));
    assert!(ours("nexus-application").is_subset(&set(&["nexus-domain", "nexus-ports"])));
    let inner = set(&["nexus-domain", "nexus-ports", "nexus-application"]);
    assert!(
        ours("nexus-adapters-http").is_subset(&inner),
        "adapters-http must not use adapters-postgres"
    );
    assert!(
        ours("nexus-adapters-postgres").is_subset(&inner),
        "adapters-postgres must not use adapters-http"
    );
    for framework in ["diesel", "diesel-async", "deadpool", "tokio-postgres"] {
        assert!(
            !deps["nexus-adapters-http"].contains(framework),
            "adapters-http imports {framework}"
        );
        assert!(
            !deps["nexus-application"].contains(framework),
            "application imports {framework}"
        );
    }
    for framework in ["actix-web", "utoipa", "utoipa-actix-web"] {
        assert!(
            !deps["nexus-adapters-postgres"].contains(framework),
            "adapters-postgres imports {framework}"
        );
        assert!(
            !deps["nexus-application"].contains(framework),
            "application imports {framework}"
        );
    }
}
