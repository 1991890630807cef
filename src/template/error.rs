//! The one error type of the template engine.

use std::fmt;

use super::budget::{Exceeded, Limit};

/// Whether the template failed to parse, failed while executing, or used up its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Parse,
    Execute,
    /// The render (or the parse) passed one of its [`Limits`](super::Limits).
    Budget(Limit),
}

/// A template that cannot be parsed or executed.
///
/// The message names the template, the line and column, and the construct or function at
/// fault. It is built only from the template's own text, type names and function names:
/// never from a data value or a rendered value, so it is safe to put in logs and in the
/// ExternalSecret's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    name: String,
    phase: Phase,
    line: usize,
    column: usize,
    /// The construct at fault, quoted from the template (for example `<.password>`); may be empty.
    at: String,
    message: String,
}

impl TemplateError {
    pub(crate) fn new(
        name: &str,
        phase: Phase,
        text: &str,
        pos: usize,
        at: String,
        message: String,
    ) -> Self {
        let (line, column) = line_column(text, pos);
        TemplateError {
            name: name.to_owned(),
            phase,
            line,
            column,
            at,
            message,
        }
    }

    /// The error for a budget exceeded at `pos`; `at` names the function at fault, if any.
    pub(crate) fn budget(
        name: &str,
        text: &str,
        pos: usize,
        at: String,
        exceeded: Exceeded,
    ) -> Self {
        let message = exceeded.to_string();
        Self::new(name, Phase::Budget(exceeded.limit), text, pos, at, message)
    }

    /// The template's name, as given to [`render`](super::render).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// 1-based line of the fault in the template text.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column (in bytes) of the fault in the template text.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What went wrong, without the template name and position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.phase {
            Phase::Parse => "unable to parse template",
            Phase::Execute | Phase::Budget(_) => "unable to execute template",
        };
        write!(f, "{verb} {}:{}:{}: ", self.name, self.line, self.column)?;
        if !self.at.is_empty() {
            write!(f, "at {}: ", self.at)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..pos.min(text.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, 1 + before.len() - line_start)
}
