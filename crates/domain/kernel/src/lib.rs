//! The shared kernel: value objects and ports every context speaks in.
//!
//! Pure: no I/O crate may appear in this crate's dependency tree (`just check-arch`).

pub mod clock;
pub mod email;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod ids;
pub mod jobs;
pub mod money;
pub mod paging;
pub mod quantity;
pub mod secret;
pub mod text;
pub mod validation;

pub use clock::{changed_at, Clock, SystemClock};
pub use email::{Email, EmailError};
pub use error::{InfraError, InfraErrorKind};
pub use health::HealthCheck;
pub use ids::{CustomerId, OrderId, ProductId};
pub use money::{Currency, Money, MoneyError};
pub use paging::{Cursor, CursorError, Page, PageRequest};
pub use quantity::{Quantity, QuantityError};
pub use secret::Secret;
pub use text::{BoundedText, TextError};
pub use validation::{field_error, FieldError, ValidationErrors};
