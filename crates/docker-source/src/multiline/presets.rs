//! The built-in rules for Java, Python and Go stack traces: byte-prefix checks, no regex.
//!
//! Each preset decides, from a line and the phase of the stream's open event (if any), what the
//! line does ([`Step`]). The checks look at a line's first bytes (and, for Java's start, its
//! first word), so a line that belongs to no trace costs a few comparisons.
//!
//! - **Java** (also Kotlin, Scala): an event starts at `Exception in thread "..."` or at a line
//!   whose first word is a class name ending in `Exception`, `Error` or `Throwable`, followed by
//!   `:` or nothing (`java.lang.IllegalStateException: boom`). It continues with indented
//!   `at ...`, `... N more` (and logback's `... N common frames omitted`), indented
//!   `Suppressed: ...`, and `Caused by: ...` / `Wrapped by: ...` (indented or not).
//! - **Python**: an event starts at `Traceback (most recent call last):` (or an exception group's
//!   `+ Exception Group Traceback ...`), continues with indented lines (`File "..."`, the source
//!   line, `^^^^` markers), and takes the first line that is not indented as its last: the
//!   exception (`ValueError: bad value`). A chained exception (a blank line, `During handling of
//!   the above exception, another exception occurred:` or `The above exception was the direct
//!   cause of the following exception:`, a blank line, a new `Traceback`) joins the same event;
//!   the blank and header lines stay tentative until that `Traceback` comes.
//! - **Go**: an event starts at `panic: ` or `fatal error: ` and continues with `[signal ...]`,
//!   `goroutine N [...]:`, function lines (`main.main()`, `main.(*T).f(0x1, ...)`), indented
//!   file lines, `created by ...`, `runtime stack:` and `...additional frames elided...`. Blank
//!   lines between goroutines are tentative: they join only if the dump goes on after them.

use serde::{Deserialize, Serialize};

use super::Step;

/// A built-in rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MultilinePreset {
    /// Java (and JVM languages') exception stack traces.
    Java,
    /// Python tracebacks, chained exceptions included.
    Python,
    /// Go panics and fatal errors with their goroutine dumps.
    Go,
}

impl MultilinePreset {
    /// Every preset, in a fixed order.
    pub(crate) const ALL: [MultilinePreset; 3] = [
        MultilinePreset::Java,
        MultilinePreset::Python,
        MultilinePreset::Go,
    ];

    /// The name used in configuration and container labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MultilinePreset::Java => "java",
            MultilinePreset::Python => "python",
            MultilinePreset::Go => "go",
        }
    }

    /// What `line` does, given the phase of the open event (`None`: no event is open); returns
    /// the phase of the event afterwards.
    pub(crate) fn step(self, open: Option<Phase>, line: &[u8]) -> (Step, Phase) {
        match self {
            MultilinePreset::Java => (java(open.is_some(), line), Phase::Body),
            MultilinePreset::Python => python(open, line),
            MultilinePreset::Go => (go(open.is_some(), line), Phase::Body),
        }
    }
}

/// Where an open event stands, for the presets whose next step depends on it (Python).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No distinction needed (Java, Go, custom rules).
    #[default]
    Body,
    /// In a traceback's frames (indented lines).
    PythonFrames,
    /// Just after the exception line that ends a traceback.
    PythonFinal,
    /// Blank lines after the exception line: a chained exception may follow.
    PythonGap,
    /// After a chaining header (`During handling of the above exception, ...`).
    PythonChain,
}

fn java(open: bool, line: &[u8]) -> Step {
    if open && java_continues(line) {
        Step::Join
    } else if java_starts(line) {
        Step::Start
    } else {
        Step::Alone
    }
}

/// `Exception in thread "main" ...`, or a first word that is a class name ending in
/// `Exception`, `Error` or `Throwable`, followed by `:` or by nothing.
fn java_starts(line: &[u8]) -> bool {
    if line.starts_with(b"Exception in thread \"") {
        return true;
    }
    let word_end = line
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'$')))
        .unwrap_or(line.len());
    let (word, rest) = line.split_at(word_end);
    word.first().is_some_and(u8::is_ascii_alphabetic)
        && matches!(rest.first(), None | Some(b':'))
        && (word.ends_with(b"Exception")
            || word.ends_with(b"Error")
            || word.ends_with(b"Throwable"))
}

fn java_continues(line: &[u8]) -> bool {
    let text = trim_indent(line);
    if text.starts_with(b"Caused by:") || text.starts_with(b"Wrapped by:") {
        return true;
    }
    text.len() < line.len()
        && (text.starts_with(b"at ")
            || text.starts_with(b"... ")
            || text.starts_with(b"Suppressed:"))
}

const PYTHON_TRACEBACK: &[u8] = b"Traceback (most recent call last):";
const PYTHON_GROUP_TRACEBACK: &[u8] = b"+ Exception Group Traceback (most recent call last):";
const PYTHON_CHAIN_HEADERS: [&[u8]; 2] = [
    b"During handling of the above exception, another exception occurred:",
    b"The above exception was the direct cause of the following exception:",
];

fn python_starts(line: &[u8]) -> bool {
    line.starts_with(PYTHON_TRACEBACK) || trim_indent(line).starts_with(PYTHON_GROUP_TRACEBACK)
}

fn python(open: Option<Phase>, line: &[u8]) -> (Step, Phase) {
    let Some(phase) = open else {
        return if python_starts(line) {
            (Step::Start, Phase::PythonFrames)
        } else {
            (Step::Alone, Phase::Body)
        };
    };
    let blank = is_blank(line);
    match phase {
        Phase::PythonFrames if !blank && is_indented(line) => (Step::Join, Phase::PythonFrames),
        // The first line that is not indented is the exception: the traceback's last line.
        Phase::PythonFrames if !blank && !python_starts(line) => (Step::Join, Phase::PythonFinal),
        Phase::PythonFinal | Phase::PythonGap if blank => (Step::Tentative, Phase::PythonGap),
        Phase::PythonGap if PYTHON_CHAIN_HEADERS.iter().any(|h| line.starts_with(h)) => {
            (Step::Tentative, Phase::PythonChain)
        }
        Phase::PythonChain if blank => (Step::Tentative, Phase::PythonChain),
        Phase::PythonChain if line.starts_with(PYTHON_TRACEBACK) => {
            (Step::Join, Phase::PythonFrames)
        }
        _ => python(None, line),
    }
}

/// Lines that continue a Go panic or fatal error, not indented.
const GO_CONTINUATIONS: [&[u8]; 5] = [
    b"goroutine ",
    b"created by ",
    b"[signal ",
    b"runtime stack:",
    b"...additional frames elided...",
];

fn go(open: bool, line: &[u8]) -> Step {
    if line.starts_with(b"panic: ") || line.starts_with(b"fatal error: ") {
        return Step::Start;
    }
    if !open {
        return Step::Alone;
    }
    if is_blank(line) {
        Step::Tentative
    } else if is_indented(line)
        || GO_CONTINUATIONS
            .iter()
            .any(|prefix| line.starts_with(prefix))
        || is_go_function_line(line)
    {
        Step::Join
    } else {
        Step::Alone
    }
}

/// `main.main()`, `main.(*Server).handle(0x0, {0x4b7e40, 0xc0000a2000})`, `panic({0x4a0f40?,
/// 0xc000012018?})`: a name without spaces, an opening parenthesis, a closing one at the end.
fn is_go_function_line(line: &[u8]) -> bool {
    let Some(open) = line.iter().position(|&b| b == b'(') else {
        return false;
    };
    open > 0 && line.last() == Some(&b')') && !line[..open].iter().any(u8::is_ascii_whitespace)
}

fn trim_indent(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(line.len());
    &line[start..]
}

fn is_indented(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r'))
}
