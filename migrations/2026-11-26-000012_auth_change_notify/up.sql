-- Instances keep a short-lived cache of live sessions (see adapters-postgres
-- `session_cache`). Any statement that can end a session or change what it may do
-- (revocation, switching organization, a shorter expiry, a role change, a removal, a
-- cascade from a deleted user or organization) tells every instance to drop its cache,
-- so such a change applies within a notification's delay instead of a cache lifetime.
CREATE FUNCTION auth_change_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nexus_auth', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER sessions_auth_change
    AFTER UPDATE OF revoked_at, organization_id, user_id, expires_at OR DELETE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION auth_change_notify();

CREATE TRIGGER memberships_auth_change
    AFTER UPDATE OR DELETE ON memberships
    FOR EACH STATEMENT EXECUTE FUNCTION auth_change_notify();
