//! Tidy: the conventions a reviewer would otherwise have to remember, checked on every test run
//! (rust-analyzer's `tidy.rs` is the model).
//!
//! - every `.rs` file of the workspace opens with a `//!` line that says what it is;
//! - every path `ARCHITECTURE.md` names in backticks exists (a renamed or deleted file makes the
//!   map lie);
//! - no test is `#[ignore]`d without a reason (`#[ignore = "why"]`);
//! - no file in `crates/*/src` is over [`MAX_FILE_LINES`] lines and no function in `crates/` over
//!   [`MAX_FN_LINES`] (issue #14: a file a newcomer can read, a function with named steps).
//!
//! The checks live in a `#[cfg(test)]` module, so `cargo xtask test` (nextest) runs them.

#[cfg(test)]
mod tests {
    use std::{
        fs,
        path::{Path, PathBuf},
    };

    use crate::util::project_root;

    /// The longest file in `crates/*/src`, in lines.
    const MAX_FILE_LINES: usize = 600;
    /// The longest function in `crates/`, in lines (signature to closing brace).
    const MAX_FN_LINES: usize = 80;

    /// Folders that hold the workspace's sources and documents (build outputs are skipped).
    const SOURCE_ROOTS: [&str; 3] = ["crates", "xtask", "tests"];

    /// Every file under `dir`, skipping `.git/` and build outputs (`target/`).
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == ".git" || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }

    fn workspace_files() -> Vec<PathBuf> {
        let root = project_root();
        let mut files = Vec::new();
        walk(&root, &mut files);
        files
            .into_iter()
            .map(|path| path.strip_prefix(&root).unwrap_or(&path).to_path_buf())
            .collect()
    }

    fn rust_sources() -> Vec<PathBuf> {
        workspace_files()
            .into_iter()
            .filter(|path| {
                path.extension().is_some_and(|ext| ext == "rs")
                    && SOURCE_ROOTS.iter().any(|root| path.starts_with(root))
            })
            .collect()
    }

    #[test]
    fn every_rust_file_opens_with_a_module_doc_line() {
        let root = project_root();
        let sources = rust_sources();
        assert!(sources.len() > 50, "found only {} .rs files", sources.len());
        let missing: Vec<String> = sources
            .iter()
            .filter(|path| {
                let text = fs::read_to_string(root.join(path)).unwrap_or_default();
                !text.trim_start().starts_with("//!")
            })
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "files without a `//!` line saying what they are: {missing:?}"
        );
    }

    #[test]
    fn no_library_file_is_too_long() {
        let root = project_root();
        let long: Vec<String> = rust_sources()
            .iter()
            .filter(|path| {
                path.starts_with("crates")
                    && path
                        .components()
                        .nth(2)
                        .is_some_and(|c| c.as_os_str() == "src")
            })
            .filter_map(|path| {
                let lines = fs::read_to_string(root.join(path))
                    .unwrap_or_default()
                    .lines()
                    .count();
                (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", path.display()))
            })
            .collect();
        assert!(
            long.is_empty(),
            "files over {MAX_FILE_LINES} lines: {long:?}"
        );
    }

    #[test]
    fn no_function_in_crates_is_too_long() {
        let root = project_root();
        let long: Vec<String> = rust_sources()
            .iter()
            .filter(|path| path.starts_with("crates"))
            .flat_map(|path| {
                let text = fs::read_to_string(root.join(path)).unwrap_or_default();
                function_lengths(&text)
                    .into_iter()
                    .filter(|(_, _, lines)| *lines > MAX_FN_LINES)
                    .map(|(name, line, lines)| {
                        format!("{}:{line} {name} ({lines} lines)", path.display())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            long.is_empty(),
            "functions over {MAX_FN_LINES} lines: {long:?}"
        );
    }

    /// Each function with a body: its name, first line (1-based) and length in lines, from the
    /// signature to the closing brace at the signature's indentation (rustfmt's layout).
    fn function_lengths(text: &str) -> Vec<(String, usize, usize)> {
        let lines: Vec<&str> = text.lines().collect();
        let mut found = Vec::new();
        for (start, line) in lines.iter().enumerate() {
            let Some(name) = function_name(line) else {
                continue;
            };
            let indent = &line[..line.len() - line.trim_start().len()];
            let closing = format!("{indent}}}");
            let mut opened = false;
            for (offset, next) in lines[start..].iter().enumerate() {
                opened |= next.contains('{');
                if !opened {
                    if next.trim_end().ends_with(';') {
                        break; // a declaration without a body
                    }
                    continue;
                }
                let one_line = offset == 0 && next.trim_end().ends_with('}');
                if one_line || (offset > 0 && *next == closing) {
                    found.push((name, start + 1, offset + 1));
                    break;
                }
            }
        }
        found
    }

    /// The name of the function a line declares, if it does (`pub(crate) async fn name(`).
    fn function_name(line: &str) -> Option<String> {
        let mut words = line.split_whitespace();
        loop {
            let word = words.next()?;
            match word {
                "async" | "const" | "unsafe" | "extern" | "\"C\"" => {}
                "fn" => break,
                _ if word.starts_with("pub") => {}
                _ => return None,
            }
        }
        let name: String = words
            .next()?
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty()).then_some(name)
    }

    #[test]
    fn the_function_check_measures_signature_to_closing_brace() {
        let text = "pub(crate) async fn outer(\n    a: u8,\n) {\n    let x = 1;\n}\n\nfn decl();\n    fn inner() { 1 }\n";
        assert_eq!(
            function_lengths(text),
            vec![("outer".to_owned(), 1, 5), ("inner".to_owned(), 8, 1)]
        );
        assert_eq!(function_name("// fn not_code() {"), None);
        assert_eq!(function_name("let fn_like = 1;"), None);
    }

    #[test]
    fn no_test_is_ignored_without_a_reason() {
        let root = project_root();
        let offenders: Vec<String> = rust_sources()
            .iter()
            .flat_map(|path| {
                let text = fs::read_to_string(root.join(path)).unwrap_or_default();
                text.lines()
                    .enumerate()
                    .filter(|(_, line)| is_bare_ignore(line))
                    .map(|(number, _)| format!("{}:{}", path.display(), number + 1))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "`#[ignore]` without `= \"reason\"`: {offenders:?}"
        );
    }

    /// `#[ignore]` as an attribute, not inside a string or a comment of this file.
    fn is_bare_ignore(line: &str) -> bool {
        let line = line.trim();
        line.starts_with("#[ignore]") || line.starts_with("#[ignore ]")
    }

    #[test]
    fn the_ignore_check_can_tell_a_reason_from_none() {
        assert!(is_bare_ignore("    #[ignore]"));
        assert!(!is_bare_ignore("#[ignore = \"needs a GPU\"]"));
        assert!(!is_bare_ignore("// #[ignore] is forbidden"));
    }

    /// Backticked words of `text` that name a file or folder of the repository.
    fn named_paths(text: &str) -> Vec<String> {
        let mut paths = Vec::new();
        for (index, piece) in text.split('`').enumerate() {
            // Odd pieces are inside backticks.
            if index % 2 == 0 || !looks_like_a_path(piece) {
                continue;
            }
            paths.push(piece.trim_end_matches('/').to_owned());
        }
        paths.sort();
        paths.dedup();
        paths
    }

    fn looks_like_a_path(word: &str) -> bool {
        // Not `.json`: the map names runtime files such as `checkpoints.json`.
        const FILE_ENDINGS: [&str; 6] = [".rs", ".md", ".toml", ".yml", ".yaml", ".cfg"];
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
        if word.is_empty() || !word.chars().all(allowed) || word.starts_with('/') {
            return false;
        }
        // Runtime files (under the data dir or `target/`) are not part of the repository.
        if word.starts_with("target/") || word.starts_with("./") {
            return false;
        }
        let file = FILE_ENDINGS.iter().any(|ending| word.ends_with(ending));
        let folder = word.contains('/') && !word.contains("//");
        (file || folder) && !word.chars().all(|c| c == '.' || c == '/')
    }

    /// Whether `named` is a path of the repository: from its root, or a tail of one of its paths
    /// (the map names files within the section of their crate, e.g. `sinks/loki/`).
    fn exists(named: &str, files: &[String]) -> bool {
        let named_dir = format!("{named}/");
        let tail = format!("/{named}");
        let tail_dir = format!("/{named}/");
        files.iter().any(|file| {
            file == named
                || file.starts_with(&named_dir)
                || file.ends_with(&tail)
                || file.contains(&tail_dir)
        })
    }

    #[test]
    fn every_path_architecture_names_exists() {
        let root = project_root();
        let map = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
        let files: Vec<String> = workspace_files()
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        let named = named_paths(&map);
        assert!(named.len() > 10, "ARCHITECTURE.md names only {named:?}");
        let missing: Vec<&String> = named.iter().filter(|n| !exists(n, &files)).collect();
        assert!(
            missing.is_empty(),
            "ARCHITECTURE.md names paths that do not exist: {missing:?}"
        );
    }

    #[test]
    fn the_path_check_finds_what_is_there_and_only_that() {
        let files = vec![
            "crates/sink-pipeline/src/sinks/loki/mod.rs".to_owned(),
            "deploy/prometheus/alerts.yml".to_owned(),
        ];
        assert!(exists("sinks/loki", &files));
        assert!(exists("mod.rs", &files));
        assert!(exists("deploy/prometheus/alerts.yml", &files));
        assert!(exists("deploy", &files));
        assert!(!exists("sinks/kafka", &files));
        assert!(!exists("alerts.yaml", &files));
        assert_eq!(
            named_paths("see `crates/a/src/b.rs`, `/health`, `x = 1`, `target/soak/` and `c.md`"),
            vec!["c.md".to_owned(), "crates/a/src/b.rs".to_owned()]
        );
    }
}
