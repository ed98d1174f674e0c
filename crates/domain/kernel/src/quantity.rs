//! A positive count of units.

use serde::{Deserialize, Serialize};

/// A number of units, at least 1 and at most [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("must be at least 1")]
    TooSmall,
    #[error("must be at most {max}")]
    TooLarge { max: u32 },
}

impl Quantity {
    pub const MAX: u32 = 1_000_000;

    pub fn new(value: i64) -> Result<Self, QuantityError> {
        if value < 1 {
            return Err(QuantityError::TooSmall);
        }
        u32::try_from(value)
            .ok()
            .filter(|v| *v <= Self::MAX)
            .map(Self)
            .ok_or(QuantityError::TooLarge { max: Self::MAX })
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = QuantityError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Quantity::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(q: Quantity) -> Self {
        q.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_positive_and_bounded() {
        assert_eq!(Quantity::new(0), Err(QuantityError::TooSmall));
        assert_eq!(Quantity::new(-3), Err(QuantityError::TooSmall));
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::new(1_000_001), Err(QuantityError::TooLarge { max: Quantity::MAX }));
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("5").map(Quantity::get).ok(), Some(5));
    }
}
