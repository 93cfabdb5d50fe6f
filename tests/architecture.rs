//! The shape of the code, checked: the VMM core never imports the
//! measurement lab (`src/lab/`), no source file reaches 400 lines, every
//! source file opens with a comment saying what it owns, and nothing in the
//! repository points at files outside it.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_under(&p, exts, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(p);
        }
    }
}

/// The text of Rust source without `//` comments (doc comments included),
/// so a sentence that names the lab is not an import.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path in `code` that reaches the lab: `crate::lab`, `tinyvmm::lab`,
/// `super::...::lab`, or `lab` inside a grouped `use crate::{...}`.
fn lab_references(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for needle in [
        "crate::lab",
        "tinyvmm::lab",
        "super::lab",
        "super::super::lab",
    ] {
        if code.contains(needle) {
            found.push(needle.to_string());
        }
    }
    let mut rest = code;
    while let Some(i) = rest.find("use crate::{") {
        let group = &rest[i..];
        let end = group.find(';').unwrap_or(group.len());
        let words = group[..end].split(|c: char| !(c.is_alphanumeric() || c == '_'));
        if words.clone().any(|w| w == "lab") {
            found.push(group[..end].to_string());
        }
        rest = &group[end..];
    }
    found
}

#[test]
fn the_core_never_imports_the_lab() {
    let mut files = Vec::new();
    files_under(&root().join("src"), &["rs"], &mut files);
    // The lab, and the lab's own executable, may use the lab.
    let lab = root().join("src/lab");
    let lab_bin = root().join("src/bin/tinyvmm-lab.rs");
    let mut offenders = Vec::new();
    for f in files
        .iter()
        .filter(|f| !f.starts_with(&lab) && **f != lab_bin)
    {
        let refs = lab_references(&code_only(&std::fs::read_to_string(f).unwrap()));
        if !refs.is_empty() {
            offenders.push(format!("{}: {refs:?}", f.display()));
        }
    }
    assert!(files.len() > 40, "found only {} source files", files.len());
    assert!(
        offenders.is_empty(),
        "core files importing the lab:\n{}",
        offenders.join("\n")
    );
}

/// Within the lab the imports run one way: compare -> container -> measure
/// (and each may use the lab root and the core), so there is no cycle.
#[test]
fn the_lab_modules_import_one_way() {
    let forbidden = [
        ("container", &["compare"][..]),
        ("measure", &["compare", "container"][..]),
    ];
    let mut offenders = Vec::new();
    for (module, not) in forbidden {
        let mut files = Vec::new();
        files_under(&root().join("src/lab").join(module), &["rs"], &mut files);
        assert!(!files.is_empty(), "src/lab/{module} has no files");
        for f in files {
            let code = code_only(&std::fs::read_to_string(&f).unwrap());
            for other in not {
                let needles = [
                    format!("lab::{other}"),
                    format!("super::super::{other}"),
                    format!("super::{other}::"),
                ];
                if needles.iter().any(|n| code.contains(n.as_str())) {
                    offenders.push(format!("{} uses {other}", f.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn the_import_check_sees_every_form_of_import() {
    assert!(lab_references("use crate::lab::MARKER;").len() == 1);
    assert!(!lab_references("use crate::{config, lab::compare};").is_empty());
    assert!(!lab_references("use crate::{\n    lab,\n    vmm,\n};").is_empty());
    assert!(!lab_references("let x = super::super::lab::which(\"sh\");").is_empty());
    assert!(
        lab_references(&code_only(
            "// see crate::lab for the lab\nuse crate::{label, vmm};"
        ))
        .is_empty()
    );
}

#[test]
fn source_files_are_under_400_lines_and_say_what_they_own() {
    let mut files = Vec::new();
    files_under(&root().join("src"), &["rs"], &mut files);
    files_under(&root().join("kernels/tiny"), &["S", "h", "ld"], &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = text.lines().count();
        if lines >= 400 {
            problems.push(format!("{}: {lines} lines", f.display()));
        }
        let first = text.lines().next().unwrap_or("");
        let opens_with_comment = ["//!", "/*", "#", "//", ";"]
            .iter()
            .any(|c| first.trim_start().starts_with(c));
        if !opens_with_comment {
            problems.push(format!("{}: does not open with a comment", f.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn nothing_refers_to_files_outside_the_repository() {
    let out = std::process::Command::new("git")
        .args([
            "grep",
            "-n",
            "-I",
            "-E",
            r"(\.\./|/work/)shared/|shared/(HOST|PEERS|STYLE|ARCHITECTURE)\.md|\bHOST\.md",
        ])
        .current_dir(root())
        .output();
    let Ok(out) = out else {
        panic!("git is needed to list the repository's files");
    };
    let hits = String::from_utf8_lossy(&out.stdout).into_owned();
    let hits: Vec<&str> = hits
        .lines()
        .filter(|l| !l.starts_with("tests/architecture.rs:"))
        .collect();
    assert!(
        hits.is_empty(),
        "references to files outside the repository:\n{}",
        hits.join("\n")
    );
}
