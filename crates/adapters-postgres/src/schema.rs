// The diesel view of the schema in `migrations/`; kept by hand in step with it (a test
// applies the migrations and exercises these tables).

diesel::table! {
    events (organization_id, id) {
        id -> Uuid,
        organization_id -> Uuid,
        seq -> Int8,
        #[sql_name = "type"]
        event_type -> Text,
        occurred_at -> Timestamptz,
        actor -> Jsonb,
        payload -> Jsonb,
    }
}

// `contacts` has more columns than diesel's default 16-column tables allow; its
// repository writes SQL by hand (see `repo/contacts.rs`).

diesel::table! {
    custom_field_definitions (organization_id, id) {
        organization_id -> Uuid,
        id -> Uuid,
        key -> Text,
        label -> Text,
        field_type -> Text,
        required -> Bool,
        options -> Array<Text>,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
