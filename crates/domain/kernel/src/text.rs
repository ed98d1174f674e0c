//! Short human text (names, address lines, notes): trimmed, non-empty, bounded, printable.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BoundedText(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacters,
}

impl BoundedText {
    pub fn parse(raw: &str, max: usize) -> Result<Self, TextError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(TextError::Empty);
        }
        if value.chars().count() > max {
            return Err(TextError::TooLong { max });
        }
        if value.chars().any(char::is_control) {
            return Err(TextError::ControlCharacters);
        }
        Ok(Self(value.to_owned()))
    }

    /// Text of several lines (a note): as `parse`, except that line breaks and tabs are kept.
    pub fn parse_lines(raw: &str, max: usize) -> Result<Self, TextError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(TextError::Empty);
        }
        if value.chars().count() > max {
            return Err(TextError::TooLong { max });
        }
        if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(TextError::ControlCharacters);
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BoundedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and addresses are personal data: never in the logs.
        write!(f, "BoundedText({} chars)", self.0.chars().count())
    }
}

impl fmt::Display for BoundedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(BoundedText::parse("  Ada ", 10).map(|t| t.as_str().to_owned()), Ok("Ada".to_owned()));
        assert_eq!(BoundedText::parse("   ", 10), Err(TextError::Empty));
        assert_eq!(BoundedText::parse("abcdef", 5), Err(TextError::TooLong { max: 5 }));
        assert_eq!(BoundedText::parse("a\u{0}b", 5), Err(TextError::ControlCharacters));
        assert_eq!(BoundedText::parse("a\nb", 5), Err(TextError::ControlCharacters));
        assert_eq!(BoundedText::parse_lines(" a\r\n\tb ", 5).map(|t| t.as_str().to_owned()), Ok("a\r\n\tb".to_owned()));
        assert_eq!(BoundedText::parse_lines("a\u{0}b", 5), Err(TextError::ControlCharacters));
        assert_eq!(BoundedText::parse_lines("a\u{1b}b", 5), Err(TextError::ControlCharacters));
        assert_eq!(BoundedText::parse_lines("abcdef", 5), Err(TextError::TooLong { max: 5 }));
        assert!(BoundedText::parse("Zoë", 3).is_ok(), "length counts characters, not bytes");
    }
}
