-- The last validated Teams `serviceUrl` of each tenant (host/src/teams.rs,
-- TeamsSender). A proactive message (an approval request to a manager the bot
-- is not talking to) is sent through the tenant's connector; kept here, it
-- still reaches Teams after a restart, before anyone of the tenant has written
-- to the bot again. The URL is checked against the configured connector hosts
-- again each time it is used. Nothing here is secret.

CREATE TABLE teams_service_urls (
    -- The tenant's GUID, lowercase.
    tenant      TEXT    NOT NULL PRIMARY KEY,
    -- The connector's base URL, as the validated activity gave it.
    service_url TEXT    NOT NULL,
    -- When an activity last gave it, Unix seconds (for operators).
    seen_at     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
