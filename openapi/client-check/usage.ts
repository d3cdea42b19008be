// Type-level proof that a frontend can consume the NEXUS API through a client
// generated from the committed spec (openapi/openapi.json) with
// openapi-typescript + openapi-fetch.
//
// This file is only type-checked by `tsc` (see check.sh); it is never executed
// and performs no network calls. `./generated/schema` is produced at check time
// and is git-ignored.
//
// Later issues extend this file as operations appear in the spec: add one
// function per new operation that calls it through `client` and reads at least
// one real field of its success and error bodies, so that renaming a path or a
// field in the Rust code breaks this check. Keep the `@ts-expect-error` probes
// at the bottom: they fail if the generated types ever degrade to `any`.

import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema";

export type Problem = components["schemas"]["Problem"];
export type FieldError = components["schemas"]["FieldError"];
export type HealthStatus = components["schemas"]["HealthStatus"];

export function makeClient(baseUrl: string) {
  return createClient<paths>({ baseUrl });
}

export type NexusClient = ReturnType<typeof makeClient>;

// openapi-fetch infers each call's options as a generic type that need only *extend* the
// operation's, so a parameter the spec does not declare (`tag_mode` for `tagMode`), passed
// inline, is no excess property and compiles. Every query and header object below is
// therefore checked on its own with `satisfies Query<...>` / `Header<...>`, where an
// undeclared parameter is an excess property, hence a type error.
type Params<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { parameters: infer X } ? X : never;
/** The query parameters `M P` declares. */
export type Query<P extends keyof paths, M extends keyof paths[P]> = NonNullable<
  Params<P, M> extends { query?: infer Q } ? Q : never
>;
/** The header parameters `M P` declares. */
export type Header<P extends keyof paths, M extends keyof paths[P]> = NonNullable<
  Params<P, M> extends { header?: infer H } ? H : never
>;

/** Renders a problem document the way a UI would, using every field of `Problem`. */
export function describeProblem(problem: Problem): string {
  const fields: readonly FieldError[] = problem.errors ?? [];
  const perField = fields.map((e) => `${e.field}: ${e.message} (${e.code})`);
  const request = problem.requestId != null ? ` [request ${problem.requestId}]` : "";
  return (
    `${problem.status} ${problem.title} — ${problem.detail} ` +
    `(code ${problem.code}, type ${problem.type})${request}` +
    (perField.length > 0 ? `: ${perField.join("; ")}` : "")
  );
}

/** GET /health/live — 200 only. */
export async function liveness(client: NexusClient): Promise<string> {
  const { data, response } = await client.GET("/health/live");
  if (data === undefined) {
    throw new Error(`liveness: unexpected HTTP ${response.status}`);
  }
  const body: HealthStatus = data;
  return body.status;
}

export type Readiness =
  | { ready: true; status: string }
  | { ready: false; code: string; problem: Problem; retryAfterSeconds: number | null };

/** GET /health/ready — 200, or 503 with an application/problem+json body. */
export async function readiness(client: NexusClient): Promise<Readiness> {
  const { data, error, response } = await client.GET("/health/ready");
  if (error !== undefined) {
    // `error` is typed as the 503 `Problem`; switch on its stable `code`.
    const retryAfter = response.headers.get("Retry-After");
    return {
      ready: false,
      code: error.code,
      problem: error,
      retryAfterSeconds: retryAfter === null ? null : Number(retryAfter),
    };
  }
  return { ready: true, status: data.status };
}

/** GET /metrics — Prometheus text, so parse the body as text, not JSON. */
export async function metrics(client: NexusClient): Promise<string> {
  const { data, response } = await client.GET("/metrics", { parseAs: "text" });
  if (data === undefined) {
    throw new Error(`metrics: unexpected HTTP ${response.status}`);
  }
  const text: string = data;
  return text;
}

// ---------------------------------------------------------------------------
// Identity: register, login, refresh, me, organization, members, API keys.
// ---------------------------------------------------------------------------
export type TokenResponse = components["schemas"]["TokenResponse"];
export type Role = components["schemas"]["RoleDto"];

/** POST /auth/register, then POST /auth/login and POST /auth/refresh. */
export async function signUpAndRotate(client: NexusClient): Promise<TokenResponse> {
  const registered = await client.POST("/api/v1/auth/register", {
    body: { email: "ada@example.com", password: "correct-horse", name: "Ada", organizationName: "Engines" },
  });
  if (registered.error !== undefined) {
    throw new Error(describeProblem(registered.error));
  }
  const login = await client.POST("/api/v1/auth/login", {
    body: { email: "ada@example.com", password: "correct-horse" },
  });
  if (login.error !== undefined) {
    // 401 invalid_credentials and 429 rate_limited are both problems.
    throw new Error(`${login.error.code}: ${login.error.detail}`);
  }
  const refreshed = await client.POST("/api/v1/auth/refresh", {
    body: { refreshToken: login.data.refreshToken ?? null },
  });
  if (refreshed.data === undefined) {
    throw new Error("refresh failed");
  }
  const role: Role = refreshed.data.role;
  void role;
  return refreshed.data;
}

/** Authenticated calls: who am I, my organization, its members and API keys. */
export async function team(baseUrl: string, accessToken: string): Promise<string[]> {
  const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${accessToken}` } });
  const me = await client.GET("/api/v1/auth/me");
  const org = await client.GET("/api/v1/organizations/current");
  const renamed = await client.PATCH("/api/v1/organizations/current", {
    params: { header: { "If-Match": `"${org.data?.version ?? 1}"` } satisfies Header<"/api/v1/organizations/current", "patch"> },
    body: { name: "Renamed" },
  });
  if (renamed.error !== undefined && renamed.response.status === 412) {
    return [renamed.error.code];
  }
  const members = await client.GET("/api/v1/members", { params: { query: { limit: 50 } satisfies Query<"/api/v1/members", "get"> } });
  const key = await client.POST("/api/v1/api-keys", {
    params: { header: { "Idempotency-Key": "sync-key-1" } satisfies Header<"/api/v1/api-keys", "post"> },
    body: { name: "sync", role: "VIEWER" },
  });
  // A retry of a response that showed its secret gets the secret's absence, as a 409.
  if (key.error !== undefined && key.error.code === "idempotency_secret_not_replayed") {
    return [key.response.headers.get("Location") ?? ""];
  }
  await client.PATCH("/api/v1/members/{userId}", {
    params: { path: { userId: me.data?.user.id ?? "" } },
    body: { role: "ADMIN" },
  });
  const emails = (members.data?.data ?? []).map((m) => `${m.email} (${m.role})`);
  return [me.data?.user.email ?? "", org.data?.slug ?? "", key.data?.secret ?? "", ...emails];
}

// ---------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------
export type Webhook = components["schemas"]["WebhookDto"];
export type Delivery = components["schemas"]["DeliveryDto"];

/** Subscribe, ping, read the log, redeliver, rotate, pause, delete. */
export async function webhooks(client: NexusClient): Promise<string[]> {
  const created = await client.POST("/api/v1/webhooks", {
    body: { url: "https://hooks.example.com/nexus", eventTypes: ["contact.created", "deal.won"] },
  });
  const id = created.data?.webhook.id ?? "";
  const secret: string = created.data?.secret ?? "";
  const list = await client.GET("/api/v1/webhooks", { params: { query: { limit: 20 } satisfies Query<"/api/v1/webhooks", "get"> } });
  const one = await client.GET("/api/v1/webhooks/{id}", { params: { path: { id } } });
  const ping = await client.POST("/api/v1/webhooks/{id}/test", { params: { path: { id } } });
  const log = await client.GET("/api/v1/webhooks/{id}/deliveries", {
    params: { path: { id }, query: { status: "failed", limit: 50 } satisfies Query<"/api/v1/webhooks/{id}/deliveries", "get"> },
  });
  const deliveryId = ping.data?.id ?? "";
  const detail = await client.GET("/api/v1/webhooks/{id}/deliveries/{deliveryId}", {
    params: { path: { id, deliveryId } },
  });
  const codes = (detail.data?.attemptLog ?? []).map((a) => a.statusCode ?? 0);
  await client.POST("/api/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver", {
    params: { path: { id, deliveryId } },
  });
  const rotated = await client.POST("/api/v1/webhooks/{id}/rotate-secret", {
    params: { path: { id } },
    body: { overlapSeconds: 3600 },
  });
  await client.PATCH("/api/v1/webhooks/{id}", {
    params: { path: { id }, header: { "If-Match": `"${one.data?.version ?? 1}"` } satisfies Header<"/api/v1/webhooks/{id}", "patch"> },
    body: { active: false, description: null },
  });
  await client.DELETE("/api/v1/webhooks/{id}", { params: { path: { id } } });
  // @ts-expect-error -- delivery states are a closed set
  await client.GET("/api/v1/webhooks/{id}/deliveries", { params: { path: { id }, query: { status: "lost" } } });
  const statuses: Delivery["status"][] = (log.data?.data ?? []).map((d) => d.status);
  return [secret, rotated.data?.secret ?? "", String(list.data?.data.length), ...statuses, ...codes.map(String)];
}

// ---------------------------------------------------------------------------
// Contacts, custom fields, tags
// ---------------------------------------------------------------------------
export type Contact = components["schemas"]["ContactDto"];
export type ContactCreate = components["schemas"]["ContactCreateRequest"];
export type CustomField = components["schemas"]["CustomFieldDto"];
export type Tag = components["schemas"]["TagDto"];

type Outcome<T> = { ok: true; value: T; etag: string | null } | { ok: false; problem: Problem };

/** POST /api/v1/contacts — 201 with ETag, or a problem (400/409/422...). */
export async function createContact(client: NexusClient, body: ContactCreate): Promise<Outcome<Contact>> {
  const { data, error, response } = await client.POST("/api/v1/contacts", {
    body,
    headers: { "Idempotency-Key": "create-ada-1" },
  });
  if (error !== undefined) return { ok: false, problem: error };
  const contact: Contact = data;
  return { ok: true, value: contact, etag: response.headers.get("ETag") };
}

/** GET /api/v1/contacts/{id}. */
export async function getContact(client: NexusClient, id: string): Promise<Outcome<Contact>> {
  const { data, error, response } = await client.GET("/api/v1/contacts/{id}", { params: { path: { id } } });
  if (error !== undefined) return { ok: false, problem: error };
  return { ok: true, value: data, etag: response.headers.get("ETag") };
}

/** PATCH /api/v1/contacts/{id} as a merge patch guarded by If-Match (412 when stale). */
export async function renameCompany(
  client: NexusClient,
  id: string,
  etag: string,
  company: string | null,
): Promise<Outcome<Contact>> {
  const { data, error, response } = await client.PATCH("/api/v1/contacts/{id}", {
    params: { path: { id }, header: { "If-Match": etag } satisfies Header<"/api/v1/contacts/{id}", "patch"> },
    body: { company, lifecycleStage: "customer" },
  });
  if (error !== undefined) return { ok: false, problem: error };
  return { ok: true, value: data, etag: response.headers.get("ETag") };
}

/** DELETE then POST .../restore. */
export async function deleteAndRestore(client: NexusClient, id: string): Promise<number> {
  const deleted = await client.DELETE("/api/v1/contacts/{id}", { params: { path: { id } } });
  if (deleted.error !== undefined) return deleted.error.status;
  const restored = await client.POST("/api/v1/contacts/{id}/restore", { params: { path: { id } } });
  if (restored.error !== undefined) return restored.error.status;
  return restored.data.version;
}

/** The trash: deleted contacts still restorable, newest deletion first, to the end. */
export async function restorable(client: NexusClient, now: Date): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const { data } = await client.GET("/api/v1/contacts/deleted", {
      params: { query: { limit: 200, cursor } satisfies Query<"/api/v1/contacts/deleted", "get"> },
    });
    if (data === undefined) return ids;
    for (const c of data.data) {
      // A deleted contact reads as a contact, with when it went and until when it comes back.
      if (new Date(c.restorableUntil) > now && c.deletedAt <= c.restorableUntil) ids.push(c.id);
    }
    if (data.nextCursor == null) return ids;
    cursor = data.nextCursor;
  }
}

/** Every contact matching a search, following `nextCursor` to the end. */
export async function searchAll(
  client: NexusClient,
  q: string,
  tag: string[],
  customFields: Record<string, string> = {},
): Promise<Contact[]> {
  const all: Contact[] = [];
  let cursor: string | undefined;
  for (;;) {
    const { data, error } = await client.GET("/api/v1/contacts", {
      params: {
        query: {
          q,
          tag,
          tagMode: "all",
          sort: "-createdAt",
          limit: 200,
          cursor,
          includeTotal: false,
          // Sent as `customFields[<key>]=value` (deepObject).
          customFields,
        } satisfies Query<"/api/v1/contacts", "get">,
      },
    });
    if (error !== undefined) throw new Error(describeProblem(error));
    all.push(...data.data);
    if (data.nextCursor == null) return all;
    cursor = data.nextCursor;
  }
}

/** GET /api/v1/contacts/{id}/timeline. */
export async function timelineKinds(client: NexusClient, id: string): Promise<string[]> {
  const { data, error } = await client.GET("/api/v1/contacts/{id}/timeline", {
    params: { path: { id }, query: { limit: 20 } satisfies Query<"/api/v1/contacts/{id}/timeline", "get"> },
  });
  if (error !== undefined) throw new Error(error.code);
  return data.data.map((e) => `${e.type}: ${e.subject} at ${e.occurredAt}`);
}

/** POST /api/v1/contacts/batch — per-item statuses. */
export async function batch(client: NexusClient, create: ContactCreate, deleteId: string): Promise<number[]> {
  const { data, error } = await client.POST("/api/v1/contacts/batch", {
    body: { items: [{ op: "create", data: create }, { op: "delete", id: deleteId, ifMatch: 3 }] },
  });
  if (error !== undefined) throw new Error(error.code);
  return data.results.map((r) => (r.error != null ? r.error.status : r.status));
}

/** POST /api/v1/contacts/imports (text/csv, 202) then GET the job until it ends. */
export async function importCsv(client: NexusClient, csv: string): Promise<string> {
  const accepted = await client.POST("/api/v1/contacts/imports", {
    params: { query: { onDuplicate: "update" } satisfies Query<"/api/v1/contacts/imports", "post"> },
    body: csv,
    // The body's type covers every accepted form (CSV text or a form's `file` part).
    bodySerializer: (b) => (typeof b === "string" ? b : b.file),
    headers: { "Content-Type": "text/csv" },
  });
  if (accepted.error !== undefined) throw new Error(describeProblem(accepted.error));
  const id = accepted.data.id;
  for (;;) {
    const { data, error } = await client.GET("/api/v1/contacts/imports/{id}", { params: { path: { id } } });
    if (error !== undefined) throw new Error(error.code);
    if (data.status === "completed" || data.status === "failed") {
      const rows = data.errors.map((e) => `row ${e.row} ${e.field}: ${e.message}`);
      return `${data.created} created, ${data.updated} updated, ${data.failed} failed${rows.length ? ": " + rows.join("; ") : ""}`;
    }
  }
}

/** POST /api/v1/contacts/imports as multipart/form-data (a browser's file input): the job id. */
export async function importCsvForm(client: NexusClient, csv: string): Promise<string> {
  const { data, error } = await client.POST("/api/v1/contacts/imports", {
    body: { file: csv },
    bodySerializer: (b) => {
      const form = new FormData();
      form.append("file", new Blob([typeof b === "string" ? b : b.file], { type: "text/csv" }), "contacts.csv");
      return form;
    },
  });
  if (error !== undefined) throw new Error(describeProblem(error));
  return data.id;
}

/** GET /api/v1/contacts/export — the filtered list as CSV text. */
export async function exportCsv(client: NexusClient, q: string): Promise<string> {
  const { data, error } = await client.GET("/api/v1/contacts/export", {
    params: { query: { q, tag: ["vip"], tagMode: "any", sort: "lastName" } satisfies Query<"/api/v1/contacts/export", "get"> },
    parseAs: "text",
  });
  if (error !== undefined) throw new Error(error.code);
  return data;
}

/** Custom field definitions: create, read, change, delete. */
export async function customFields(client: NexusClient): Promise<CustomField[]> {
  const created = await client.POST("/api/v1/custom-fields", {
    body: { key: "industry", label: "Industry", type: "select", options: ["saas", "retail"], required: false },
  });
  if (created.error !== undefined) throw new Error(created.error.code);
  const id = created.data.id;
  await client.GET("/api/v1/custom-fields/{id}", { params: { path: { id } } });
  const changed = await client.PATCH("/api/v1/custom-fields/{id}", {
    params: { path: { id } },
    body: { label: "Sector", options: ["saas", "retail", "public"] },
  });
  if (changed.error !== undefined && changed.error.code === "field_type_in_use") return [];
  await client.DELETE("/api/v1/custom-fields/{id}", { params: { path: { id } } });
  // A page at a time, like every list (an organization holds at most 200), with the count.
  const all: CustomField[] = [];
  let cursor: string | undefined;
  for (;;) {
    const { data } = await client.GET("/api/v1/custom-fields", {
      params: { query: { limit: 200, cursor, includeTotal: true } satisfies Query<"/api/v1/custom-fields", "get"> },
    });
    if (data === undefined) return all;
    const total: number | undefined = data.total;
    void total;
    all.push(...data.data);
    if (data.nextCursor == null) return all;
    cursor = data.nextCursor;
  }
}

/** Tags: list with counts, rename (merging), delete. */
export async function tags(client: NexusClient): Promise<Tag[]> {
  const renamed = await client.PATCH("/api/v1/tags/{name}", { params: { path: { name: "hot" } }, body: { name: "vip" } });
  if (renamed.data !== undefined) void renamed.data.contactsUpdated;
  await client.DELETE("/api/v1/tags/{name}", { params: { path: { name: "cold" } } });
  // A page at a time, like every list.
  const all: Tag[] = [];
  let cursor: string | undefined;
  for (;;) {
    const { data } = await client.GET("/api/v1/tags", {
      params: { query: { limit: 200, cursor } satisfies Query<"/api/v1/tags", "get"> },
    });
    if (data === undefined) return all;
    all.push(...data.data.filter((t) => t.count > 0));
    if (data.nextCursor == null) return all;
    cursor = data.nextCursor;
  }
}

// ---------------------------------------------------------------------------
// Pipelines, deals, activities
// ---------------------------------------------------------------------------
export type Deal = components["schemas"]["DealDto"];
export type Board = components["schemas"]["BoardDto"];

/** Create a deal, move it to won, read the board and the deal's timeline. */
export async function sales(baseUrl: string, accessToken: string, contactId: string): Promise<string[]> {
  const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${accessToken}` } });
  const pipelines = await client.GET("/api/v1/pipelines");
  const pipeline = (pipelines.data?.data ?? []).find((p) => p.isDefault);
  if (pipeline === undefined) return [];
  const won = pipeline.stages.find((s) => s.kind === "won");
  const created = await client.POST("/api/v1/deals", {
    params: { header: { "Idempotency-Key": "deal-1" } satisfies Header<"/api/v1/deals", "post"> },
    body: { title: "Annual plan", value: { amount: "1250.00", currency: "USD" }, contactId },
  });
  if (created.error !== undefined) return [created.error.code];
  const deal: Deal = created.data;
  // Typed apart, so that a header the spec does not declare is an excess property.
  const moveHeaders: NonNullable<paths["/api/v1/deals/{id}/move"]["post"]["parameters"]["header"]> = {
    "If-Match": `"${deal.version}"`,
    "Idempotency-Key": "move-1",
  };
  const moved = await client.POST("/api/v1/deals/{id}/move", {
    params: { path: { id: deal.id }, header: moveHeaders },
    body: { stageId: won?.id ?? deal.stageId, wonReason: "price" },
  });
  const board = await client.GET("/api/v1/pipelines/{id}/board", {
    params: { path: { id: pipeline.id }, query: { limit: 20 } satisfies Query<"/api/v1/pipelines/{id}/board", "get"> },
  });
  const b: Board | undefined = board.data;
  const totals = (b?.stages ?? []).map((s) => `${s.stage.name}: ${s.count} (${s.totals.map((t) => `${t.weightedValue} ${t.currency}`).join(", ")})`);
  await client.POST("/api/v1/activities", {
    body: { type: "TASK", subject: "Send contract", dealId: deal.id, dueAt: "2030-01-01T00:00:00Z" },
  });
  const timeline = await client.GET("/api/v1/deals/{id}/timeline", { params: { path: { id: deal.id } } });
  const kinds = (timeline.data?.data ?? []).map((a) => a.type);
  const openTasks = await client.GET("/api/v1/activities", {
    params: { query: { contactId, type: ["TASK"], open: true, limit: 20 } satisfies Query<"/api/v1/activities", "get"> },
  });
  const subjects = (openTasks.data?.data ?? []).map((a) => a.subject);
  return [moved.data?.status ?? "", ...totals, ...kinds, ...subjects];
}

// ---------------------------------------------------------------------------
// Events: the change feed, the SSE stream, the audit log
// ---------------------------------------------------------------------------
export type EventPage = components["schemas"]["EventPage"];
export type NexusEvent = components["schemas"]["EventDto"];
export type AuditEntry = components["schemas"]["AuditEntryDto"];

/** Poll the change feed from `after` for deal outcomes; returns the types seen and where to resume. */
export async function pollEvents(client: NexusClient, after: string | undefined): Promise<{ types: string[]; resume: string }> {
  const { data, error } = await client.GET("/api/v1/events", {
    params: { query: { after, types: "deal.won,deal.lost", limit: 100 } satisfies Query<"/api/v1/events", "get"> },
  });
  if (error !== undefined) return { types: [describeProblem(error)], resume: after ?? "" };
  const page: EventPage = data;
  const types = page.data.map((e: NexusEvent) => `${e.type} ${e.occurredAt} ${e.actor.kind}`);
  return { types: page.hasMore ? [...types, "more"] : types, resume: page.nextCursor };
}

/** Open the SSE stream (its body is `text/event-stream`, read by an EventSource in a browser). */
export async function streamStatus(client: NexusClient, lastEventId: string): Promise<number> {
  const { response, error } = await client.GET("/api/v1/events/stream", {
    params: {
      query: { types: "contact.created" } satisfies Query<"/api/v1/events/stream", "get">,
      header: { "Last-Event-ID": lastEventId } satisfies Header<"/api/v1/events/stream", "get">,
    },
    parseAs: "stream",
  });
  if (error !== undefined) return error.status;
  return response.status;
}

/** Who changed a contact, newest first. */
export async function contactAudit(client: NexusClient, contactId: string): Promise<string[]> {
  const { data, error } = await client.GET("/api/v1/audit-log", {
    params: { query: { entityType: "contact", entityId: contactId, limit: 20 } satisfies Query<"/api/v1/audit-log", "get"> },
  });
  if (error !== undefined) return [error.code];
  return data.data.map((e: AuditEntry) => {
    const who = e.actor.kind === "api_key" ? `key ${e.actor.apiKeyId}` : e.actor.kind === "user" ? e.actor.userId : "system";
    return `${e.occurredAt} ${who} ${e.action} from ${e.ip ?? "?"} (${e.userAgent ?? "?"})`;
  });
}

// ---------------------------------------------------------------------------
// Negative probes: each line below MUST be a type error. If the generated
// types degraded to `any` (or a path/field silently appeared), the directive
// would be unused and `tsc` would fail.
// ---------------------------------------------------------------------------
export async function probes(client: NexusClient): Promise<void> {
  // @ts-expect-error -- not a path of the spec
  await client.GET("/health/alive");
  // @ts-expect-error -- /health/live has no POST operation
  await client.POST("/health/live");

  const live = await client.GET("/health/live");
  if (live.data !== undefined) {
    // @ts-expect-error -- HealthStatus has no `healthy` field
    void live.data.healthy;
  }

  const contact = await client.GET("/api/v1/contacts/{id}", { params: { path: { id: "x" } } });
  if (contact.data !== undefined) {
    // @ts-expect-error -- leadScore is a number, never a string
    const score: string = contact.data.leadScore;
    void score;
  }
  // @ts-expect-error -- lifecycle stages are a closed set
  await client.POST("/api/v1/contacts", { body: { firstName: "A", lastName: "B", lifecycleStage: "prospect" } });

  // Query parameters are named as the parsers read them (camelCase); the list's
  // paging parameters are no parameters of the export.
  // @ts-expect-error -- `tagMode`, not `tag_mode`
  void ({ tag_mode: "all" } satisfies Query<"/api/v1/contacts", "get">);
  // @ts-expect-error -- `includeTotal`, not `include_total`
  void ({ include_total: true } satisfies Query<"/api/v1/contacts", "get">);
  // @ts-expect-error -- `contactId`, not `contact_id`
  void ({ contact_id: "x" } satisfies Query<"/api/v1/activities", "get">);
  // @ts-expect-error -- an export streams everything: no cursor
  void ({ cursor: "x" } satisfies Query<"/api/v1/contacts/export", "get">);
  // @ts-expect-error -- nor a page size
  void ({ limit: 10 } satisfies Query<"/api/v1/contacts/export", "get">);
  // Inline (generically inferred) options still get the excess-property check through `satisfies`.
  // @ts-expect-error -- `tag_mode` is no parameter of listContacts
  await client.GET("/api/v1/contacts", { params: { query: { tag_mode: "all" } satisfies Query<"/api/v1/contacts", "get"> } });

  // @ts-expect-error -- event types are a closed set
  const wrongType: NexusEvent["type"] = "contact.exploded";
  void wrongType;

  const ready = await client.GET("/health/ready");
  if (ready.error !== undefined) {
    // @ts-expect-error -- Problem has `code`, not `errorCode`
    void ready.error.errorCode;
    // @ts-expect-error -- `status` is an integer, not a string
    const s: string = ready.error.status;
    void s;
  }
}
