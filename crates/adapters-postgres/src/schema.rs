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
