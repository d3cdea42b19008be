DROP TRIGGER memberships_auth_change ON memberships;
DROP TRIGGER sessions_auth_change ON sessions;
DROP FUNCTION auth_change_notify();
