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

diesel::table! {
    products (id) {
        id -> Uuid,
        sku -> Text,
        name -> Text,
        description -> Nullable<Text>,
        price_amount -> Int8,
        price_currency -> Bpchar,
        category -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stock_levels (product_id) {
        product_id -> Uuid,
        on_hand -> Int4,
        reserved -> Int4,
        low_stock_threshold -> Int4,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stock_movements (id) {
        id -> Uuid,
        product_id -> Uuid,
        kind -> Text,
        on_hand_delta -> Int4,
        reserved_delta -> Int4,
        on_hand_after -> Int4,
        reserved_after -> Int4,
        reason -> Nullable<Text>,
        actor_id -> Nullable<Uuid>,
        reference -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    reservations (order_id) {
        order_id -> Uuid,
        status -> Text,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    reservation_lines (order_id, product_id) {
        order_id -> Uuid,
        product_id -> Uuid,
        quantity -> Int4,
    }
}

diesel::joinable!(stock_levels -> products (product_id));
diesel::joinable!(stock_movements -> products (product_id));
diesel::joinable!(reservation_lines -> reservations (order_id));
diesel::allow_tables_to_appear_in_same_query!(products, stock_levels, stock_movements, reservations, reservation_lines);

diesel::table! {
    outbox (id) {
        id -> Text,
        queue -> Text,
        kind -> Text,
        payload -> Jsonb,
        schema_version -> Int4,
        max_attempts -> Int4,
        trace_id -> Nullable<Text>,
        run_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        order_id -> Uuid,
        customer_id -> Uuid,
        provider -> Text,
        provider_reference -> Nullable<Text>,
        amount -> Int8,
        currency -> Bpchar,
        status -> Text,
        refunded_amount -> Int8,
        failure_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refunds (id) {
        id -> Uuid,
        payment_id -> Uuid,
        amount -> Int8,
        currency -> Bpchar,
        reason -> Nullable<Text>,
        provider_reference -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        failure_reason -> Nullable<Text>,
    }
}

diesel::table! {
    payment_events (provider, event_id) {
        provider -> Text,
        event_id -> Text,
        event_type -> Text,
        reference -> Nullable<Text>,
        received_at -> Timestamptz,
    }
}

diesel::joinable!(refunds -> payments (payment_id));
diesel::allow_tables_to_appear_in_same_query!(payments, refunds);

// `orders` has 17 columns, one more than diesel's default `table!` limit: `payment_token` is
// left out here, and read and written by the repository's hand-written statements.
diesel::table! {
    orders (id) {
        id -> Uuid,
        customer_id -> Uuid,
        status -> Text,
        payment_status -> Text,
        payment_method -> Text,
        subtotal -> Int8,
        shipping_cost -> Int8,
        total -> Int8,
        currency -> Bpchar,
        shipping_address -> Jsonb,
        customer_notes -> Nullable<Text>,
        cancellation_reason -> Nullable<Text>,
        timeline -> Jsonb,
        cart_id -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    order_lines (order_id, position) {
        order_id -> Uuid,
        position -> Int4,
        product_id -> Uuid,
        sku -> Text,
        name -> Text,
        unit_price -> Int8,
        quantity -> Int4,
        line_total -> Int8,
    }
}

diesel::joinable!(order_lines -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(orders, order_lines);

diesel::table! {
    notifications (id) {
        id -> Uuid,
        dedupe_key -> Text,
        customer_id -> Uuid,
        kind -> Text,
        title -> Text,
        body -> Text,
        data -> Jsonb,
        status -> Text,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        read_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    durability_barriers (process_id) {
        process_id -> Uuid,
        application_name -> Text,
        flushes -> Int8,
        started_at -> Timestamptz,
        flushed_at -> Timestamptz,
    }
}
