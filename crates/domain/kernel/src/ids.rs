//! Typed UUID v7 identifiers: one newtype per entity, so ids cannot be mixed up.

/// Declares a UUID v7 id newtype with parsing, display and serde support.
#[macro_export]
macro_rules! entity_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(::uuid::Uuid);

        impl $name {
            /// A new time-ordered (v7) id.
            pub fn new() -> Self {
                Self(::uuid::Uuid::now_v7())
            }

            pub const fn from_uuid(id: ::uuid::Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> ::uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ::uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl From<$name> for ::uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

entity_id!(
    /// Identifies a customer account (shoppers and admins alike). Shared: every context refers to them.
    CustomerId
);
entity_id!(
    /// Identifies a product. Shared: catalog owns products, inventory, carts and orders refer to them.
    ProductId
);
entity_id!(
    /// Identifies an order. Shared: orders own them, inventory reserves stock for them.
    OrderId
);

#[cfg(test)]
mod tests {
    entity_id!(
        /// An id used only in these tests.
        WidgetId
    );

    #[test]
    fn new_ids_are_version_7_and_time_ordered() {
        let a = WidgetId::new();
        let b = WidgetId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = WidgetId::new();
        let parsed: WidgetId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert!("not-a-uuid".parse::<WidgetId>().is_err());
    }
}
