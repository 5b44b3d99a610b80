//! The one error a spec can fail with: which document, which field, and why.

use std::fmt;

/// A refused spec. Displays as one lower-case line with no trailing period:
/// `[document N: ][field: ]reason[: how to fix]`, for example
/// `document 2: resources.memory: invalid size "12XB": use a number with an optional unit, like 512MiB or 2G`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    document: Option<usize>,
    field: String,
    message: String,
}

impl SpecError {
    /// An error about one field; `field` is a dotted path like `resources.memory` or `ports[1]`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            document: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the file as a whole (syntax, no documents): no field path.
    pub(crate) fn whole_file(message: impl Into<String>) -> SpecError {
        SpecError::new(String::new(), message)
    }

    pub(crate) fn in_document(mut self, document: usize) -> SpecError {
        self.document = Some(document);
        self
    }

    /// The 1-based document number; set only when the file held more than one workload.
    pub fn document(&self) -> Option<usize> {
        self.document
    }

    /// The dotted field path (`health.http.port`, `ports[1]`); empty for syntax errors.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The reason, without the document and field prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(document) = self.document {
            write!(formatter, "document {document}: ")?;
        }
        if !self.field.is_empty() {
            write!(formatter, "{}: ", self.field)?;
        }
        formatter.write_str(&self.message)
    }
}
