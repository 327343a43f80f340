//! One-line display of an error with its causes, and the boxed error type the crates share.

use std::{error::Error, fmt};

/// Any error, boxed: what sinks and task bodies return when the caller only logs and
/// classifies it.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Displays an error followed by its chain of sources, `outer: cause: root cause`, on one line.
/// A cause whose message its error already ends with is not repeated.
///
/// `Display` of most errors shows only the outermost message ("Docker request failed"), while
/// the reason an operator can act on ("No such file or directory") sits at the end of the
/// chain. Logs and `last_error` in `/health` use this so the reason is never lost.
///
/// # Example
///
/// ```
/// use capture_core::ErrorChain;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot reach Docker")]
/// struct Unreachable(#[source] std::io::Error);
///
/// let error = Unreachable(std::io::Error::from(std::io::ErrorKind::NotFound));
/// assert_eq!(ErrorChain(&error).to_string(), "cannot reach Docker: entity not found");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = self.0.to_string();
        f.write_str(&previous)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Some errors already end their message with their cause's; say it once.
            if !previous.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            previous = text;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
