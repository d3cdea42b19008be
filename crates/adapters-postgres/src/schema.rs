// The diesel view of the schema in `migrations/`; kept by hand in step with it (a test
// applies the migrations and exercises these tables).

diesel::table! {
    events (organization_id, id) {
        id -> Uuid,
        organization_id -> Uuid,
        append_seq -> Int8,
        /// NULL until the event is numbered after its commit (`numberer`).
        seq -> Nullable<Int8>,
        #[sql_name = "type"]
        event_type -> Text,
        occurred_at -> Timestamptz,
        actor -> Jsonb,
        payload -> Jsonb,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        slug -> Text,
        default_currency -> Text,
        settings -> Jsonb,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        custom_fields_generation -> Int8,
    }
}

diesel::table! {
    memberships (organization_id, user_id) {
        organization_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        organization_id -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Uuid,
        created_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        prefix -> Text,
        secret_hash -> Bytea,
        role -> Text,
        created_by -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    invitations (id) {
        id -> Uuid,
        organization_id -> Uuid,
        email -> Text,
        role -> Text,
        token_hash -> Bytea,
        invited_by -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    password_resets (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mail_outbox (id) {
        id -> Uuid,
        recipient -> Text,
        subject -> Text,
        body -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    rate_limits (key) {
        key -> Text,
        window_start -> Timestamptz,
        count -> Int4,
    }
}

diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(invitations -> organizations (organization_id));
diesel::allow_tables_to_appear_in_same_query!(
    events,
    users,
    organizations,
    memberships,
    sessions,
    refresh_tokens,
    api_keys,
    invitations,
    password_resets,
    mail_outbox,
    rate_limits,
);

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

// The definitions are read with their organization's generation (`field_set`).
diesel::allow_tables_to_appear_in_same_query!(organizations, custom_field_definitions);

diesel::table! {
    pipelines (organization_id, id) {
        organization_id -> Uuid,
        id -> Uuid,
        name -> Text,
        is_default -> Bool,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    pipeline_stages (organization_id, id) {
        organization_id -> Uuid,
        id -> Uuid,
        pipeline_id -> Uuid,
        name -> Text,
        probability -> Int2,
        kind -> Text,
        position -> Int4,
    }
}

diesel::table! {
    deals (organization_id, id) {
        organization_id -> Uuid,
        id -> Uuid,
        pipeline_id -> Uuid,
        stage_id -> Uuid,
        contact_id -> Uuid,
        owner_id -> Nullable<Uuid>,
        title -> Text,
        value_minor -> Int8,
        currency -> Text,
        status -> Text,
        probability -> Int2,
        expected_close_date -> Nullable<Date>,
        closed_at -> Nullable<Timestamptz>,
        lost_reason -> Nullable<Text>,
        won_reason -> Nullable<Text>,
        position -> Float8,
        stage_entered_at -> Timestamptz,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    deal_stage_history (organization_id, deal_id, entered_at) {
        organization_id -> Uuid,
        deal_id -> Uuid,
        stage_id -> Uuid,
        entered_at -> Timestamptz,
        left_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    activities (organization_id, id) {
        organization_id -> Uuid,
        id -> Uuid,
        #[sql_name = "type"]
        activity_type -> Text,
        subject -> Text,
        description -> Nullable<Text>,
        metadata -> Jsonb,
        contact_id -> Nullable<Uuid>,
        deal_id -> Nullable<Uuid>,
        due_at -> Nullable<Timestamptz>,
        assignee_id -> Nullable<Uuid>,
        completed_at -> Nullable<Timestamptz>,
        created_by -> Nullable<Uuid>,
        occurred_at -> Timestamptz,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    pipelines,
    pipeline_stages,
    deals,
    deal_stage_history,
    activities
);

diesel::table! {
    audit_log (organization_id, id) {
        organization_id -> Uuid,
        id -> Uuid,
        occurred_at -> Timestamptz,
        actor_type -> Text,
        actor_user_id -> Nullable<Uuid>,
        actor_api_key_id -> Nullable<Uuid>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        action -> Text,
        entity_type -> Text,
        entity_id -> Nullable<Text>,
        changes -> Jsonb,
    }
}
