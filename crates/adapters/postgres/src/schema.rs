//! Table definitions; `migrations/` is the source of truth and these mirror it.

diesel::table! {
    customers (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        first_name -> Text,
        last_name -> Text,
        phone -> Nullable<Text>,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        family_id -> Uuid,
        customer_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    addresses (id) {
        id -> Uuid,
        customer_id -> Uuid,
        full_name -> Text,
        line1 -> Text,
        line2 -> Nullable<Text>,
        city -> Text,
        state -> Nullable<Text>,
        postal_code -> Text,
        country -> Bpchar,
        phone -> Nullable<Text>,
        is_default -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(refresh_tokens -> customers (customer_id));
diesel::joinable!(addresses -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(customers, refresh_tokens, addresses);
