//! The documentation of the options and metrics, checked against what the
//! binary and the catalogue say: every environment variable a role's `--help`
//! names is in `docs/configuration.md`, every variable of the README's short
//! configuration table is one a role reads, and every exported metric of
//! `deploy/metrics.txt` (which `exported_metrics.rs` holds to the live
//! `/metrics`) is named in `docs/metrics.md`. A new option or metric without
//! its line in the docs, or a renamed one left behind, fails here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// Every command that reads options from the environment.
const ROLES: [&[&str]; 6] = [&["tcp"], &["udp"], &["serve"], &["logger"], &["load"], &["scale", "run"]];

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The variables `playground <role> --help` names (`[env: NAME=...]`).
fn env_names(role: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_playground")).args(role).arg("--help").output().unwrap();
    assert!(out.status.success(), "{role:?} --help: {out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let names: BTreeSet<String> =
        help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap().to_string()).collect();
    assert!(!names.is_empty(), "{role:?} --help names no variable:\n{help}");
    names
}

/// The `NAME`s in backticks at the start of the table rows of `text`.
fn table_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>())
        .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .collect()
}

#[test]
fn every_variable_of_every_role_is_in_the_configuration_guide() {
    let documented = table_names(&repo_file("docs/configuration.md"));
    for role in ROLES {
        let missing: Vec<_> = env_names(role).into_iter().filter(|n| !documented.contains(n)).collect();
        assert!(missing.is_empty(), "playground {role:?}: not in a table of docs/configuration.md: {missing:?}");
    }
}

#[test]
fn the_readme_table_names_only_variables_a_role_reads() {
    let readme = repo_file("README.md");
    let section = readme.split("\n## Configuration\n").nth(1).expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    let listed = table_names(section);
    assert!(listed.len() >= 10, "the README's table is nearly empty: {listed:?}");
    let read: BTreeSet<String> = ROLES.into_iter().flat_map(env_names).collect();
    let unknown: Vec<_> = listed.difference(&read).collect();
    assert!(unknown.is_empty(), "README names variables no role reads: {unknown:?}");
}

#[test]
fn every_exported_metric_is_in_the_metrics_guide() {
    let guide = repo_file("docs/metrics.md");
    let catalogue = repo_file("deploy/metrics.txt");
    let exported: Vec<&str> = catalogue
        .lines()
        .filter_map(|l| l.strip_prefix("exported "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(exported.len() >= 10, "deploy/metrics.txt lists almost nothing: {exported:?}");
    let missing: Vec<_> = exported
        .into_iter()
        .filter(|m| !guide.contains(&format!("`{m}`")) && !guide.contains(&format!("`{m}{{")))
        .collect();
    assert!(missing.is_empty(), "exported, but not named in docs/metrics.md: {missing:?}");
}
