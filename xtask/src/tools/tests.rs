//! The tool list is complete: every program that the sources start is on it, and what the tests
//! start is installed by `cargo xtask test`.

use std::path::{Path, PathBuf};

use super::{Need, Source, TOOLS, find};
use crate::util::project_root;

/// Where a spawn site names its program: the string literal right after one of these.
const SPAWN_CALLS: &[&str] = &["Command::new(", "require_tool(", "have("];

/// Absolute program paths that count as starting (or copying) that program.
const PROGRAM_DIRS: &[&str] = &["/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/"];

/// xtask sources that the tests run (tests/deploy/image.rs runs `cargo xtask image`).
const RUN_BY_TESTS: &[&str] = &["xtask/src/image.rs"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The scanned files, each with whether `cargo xtask test` runs it (so must install what it
/// starts).
fn scanned_files() -> Vec<(PathBuf, bool)> {
    let root = project_root();
    let mut files: Vec<(PathBuf, bool)> = rust_files(&root.join("tests"))
        .into_iter()
        .map(|path| (path, true))
        .collect();
    for krate in std::fs::read_dir(root.join("crates")).expect("list crates/") {
        let krate = krate.expect("crates/ entry").path();
        // Unit tests (in src) and integration tests are run by `cargo xtask test`.
        for (dir, run_by_tests) in [("src", true), ("tests", true), ("examples", false)] {
            files.extend(
                rust_files(&krate.join(dir))
                    .into_iter()
                    .map(|path| (path, run_by_tests)),
            );
        }
    }
    for path in rust_files(&root.join("xtask").join("src")) {
        let run_by_tests = RUN_BY_TESTS.iter().any(|file| path == root.join(file));
        files.push((path, run_by_tests));
    }
    files
}

/// The programs `text` starts: the string literal after a spawn call, and absolute program
/// paths in string literals.
fn started_programs(text: &str) -> Vec<String> {
    let mut programs = Vec::new();
    for call in SPAWN_CALLS {
        for (at, _) in text.match_indices(call) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &text[at + call.len()..];
            if let Some(literal) = rest.strip_prefix('"')
                && let Some(end) = literal.find('"')
                && is_program_name(&literal[..end])
            {
                programs.push(literal[..end].to_owned());
            }
        }
    }
    for (at, _) in text.match_indices('"') {
        if text[..at].ends_with('\\') {
            continue;
        }
        let literal = &text[at + 1..];
        for dir in PROGRAM_DIRS {
            if let Some(rest) = literal.strip_prefix(dir) {
                let name: String = rest.chars().take_while(|c| is_name_char(*c)).collect();
                if is_program_name(&name) {
                    programs.push(name);
                }
            }
        }
    }
    programs
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-".contains(c)
}

/// A literal that can name a program (the scan also meets these patterns inside strings).
fn is_program_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_name_char)
}

#[test]
fn every_program_the_sources_start_is_on_the_list() {
    let root = project_root();
    let mut problems = Vec::new();
    let mut seen = 0;
    for (path, run_by_tests) in scanned_files() {
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for program in started_programs(&text) {
            seen += 1;
            match find(&program) {
                None => problems.push(format!(
                    "{shown} starts `{program}`, which is not on xtask/src/tools.rs's TOOLS \
                     (add it with the Debian package that brings it)"
                )),
                Some(tool) if run_by_tests && !matches!(tool.need, Need::Run | Need::Test) => {
                    problems.push(format!(
                        "{shown} starts `{program}` in the tests, but TOOLS marks it {:?}: \
                         make it Need::Test so `cargo xtask test` installs it",
                        tool.need
                    ));
                }
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The scan itself works: the repository starts docker, promtool, haproxy...
    assert!(
        seen > 20,
        "only {seen} spawn sites found: is the scan broken?"
    );
}

#[test]
fn the_scan_finds_spawn_sites_and_program_paths() {
    // Built from pieces, so this file's own scan does not see them.
    let call = |name: &str, program: &str| format!("{name}(\"{program}\")");
    let text = [
        format!("let a = std::process::{};", call("Command::new", "frob")),
        format!("if !{} {{}}", call("have", "nicate")),
        format!("{};", call("require_tool", "zap")),
        format!("{};", call("behave", "not-a-spawn")),
        format!("Command::new({}(\"x\"));", "capturer_binary"),
        ["copy(\"", "/usr/bin/", "busybox\")"].concat(),
        ["\"COPY x ", "/bin/", "inside-a-dockerfile\""].concat(),
    ]
    .join("\n");
    assert_eq!(
        started_programs(&text),
        ["frob", "zap", "nicate", "busybox"]
    );
}

#[test]
fn the_list_names_each_program_once_and_services_only_for_packages() {
    for (index, tool) in TOOLS.iter().enumerate() {
        assert!(
            TOOLS[..index]
                .iter()
                .all(|other| other.program != tool.program),
            "{} is listed twice",
            tool.program
        );
        if tool.service.is_some() {
            assert!(
                matches!(tool.source, Source::Apt(_)),
                "{}: only a Debian package starts a service",
                tool.program
            );
        }
    }
    for program in ["docker", "dockerd"] {
        assert_eq!(find(program).map(|tool| tool.need), Some(Need::Run));
    }
}

#[test]
fn the_plan_installs_each_package_once_and_stops_its_service() {
    let missing: Vec<&super::Tool> = ["promtool", "prometheus", "haproxy", "cargo-nextest"]
        .iter()
        .map(|program| find(program).expect("on the list"))
        .collect();
    let plan = super::Plan::new(&missing);
    assert_eq!(plan.packages, ["prometheus", "haproxy"]);
    assert_eq!(plan.services, ["prometheus", "haproxy"]);
    assert_eq!(plan.crates, ["cargo-nextest"]);
    assert_eq!(
        plan.summary(),
        "Debian's prometheus haproxy and cargo-nextest (cargo install)"
    );
    assert_eq!(
        plan.commands(),
        "apt-get install -y --no-install-recommends prometheus haproxy; \
         cargo install --locked cargo-nextest"
    );
    assert_eq!(
        plan.programs(),
        "promtool, prometheus, haproxy, cargo-nextest"
    );
}
