//! Parse errors, worded as Docker words them.

/// A Dockerfile parse error with the 1-based line it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// An instruction that does not parse: `dockerfile parse error on line 3: unknown instruction: FOO`.
    #[error("dockerfile parse error on line {line}: {message}")]
    Instruction { line: usize, message: String },
    /// A file-level error Docker reports without the prefix (parser directives, unterminated
    /// heredocs, "file with no instructions", "no build stage in current context").
    #[error("{message}")]
    Syntax { line: usize, message: String },
}

impl DockerfileError {
    pub(crate) fn syntax(line: usize, message: impl Into<String>) -> Self {
        DockerfileError::Syntax {
            line,
            message: message.into(),
        }
    }

    pub(crate) fn instruction(line: usize, message: impl Into<String>) -> Self {
        DockerfileError::Instruction {
            line,
            message: message.into(),
        }
    }

    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            DockerfileError::Instruction { line, .. } | DockerfileError::Syntax { line, .. } => *line,
        }
    }

    /// The message without the `dockerfile parse error on line N: ` prefix.
    pub fn message(&self) -> &str {
        match self {
            DockerfileError::Instruction { message, .. } | DockerfileError::Syntax { message, .. } => message,
        }
    }
}
