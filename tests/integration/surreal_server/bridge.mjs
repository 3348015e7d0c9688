// Test-only SurrealDB server: serves the SurrealDB engine embedded in
// `@surrealdb/node` (in-memory storage) over SurrealDB's RPC WebSocket
// protocol, so the unmodified Python SDK can talk to it exactly as it talks to
// `surreal start`: `AsyncSurreal("ws://127.0.0.1:PORT")` connects to
// `ws://127.0.0.1:PORT/rpc` with the `cbor` subprotocol.
//
// Why this exists: no `surreal` binary can be installed from the registries the
// project may use (PyPI, Debian, npm), but npm's `@surrealdb/node` ships the
// real SurrealDB core (3.0.2 for 3.0.3) as a native addon. Started and stopped
// by tests/support/surreal_server.py; not part of agentdeck itself.
//
// Usage:  node bridge.mjs [PORT]      (or SURREAL_BRIDGE_PORT=PORT; 0 = any free port)
// Prints one line `READY ws://127.0.0.1:PORT` on stdout once it accepts connections.
// Environment:
//   SURREAL_BRIDGE_NODE_MODULES  directory holding the `node_modules` to load the
//                                engine and `ws` from (default: this file's directory)
//   SURREAL_BRIDGE_WATCH_STDIN=1 exit when stdin reaches EOF (the parent died)
//   SURREAL_BRIDGE_DEBUG=1       log every request method and session to stderr
//   SURREAL_BRIDGE_STORE         the engine's storage (default `mem://`); a
//                                `surrealkv://PATH` keeps the data across a
//                                restart of the bridge, as `surreal start` on a
//                                file store does
//   SURREAL_BRIDGE_REQUIRE_AUTH=1 refuse the queries of a session that has not
//                                signed in, as `surreal start --user .. --pass ..`
//                                does (see Auth below)
//
// How it works. The native engine (`SurrealNodeEngine`, the object that
// `@surrealdb/node`'s own `NodeEngine` wraps) takes one CBOR-encoded RPC
// request (`{id, method, params, session?}`) and returns the CBOR-encoded
// result (or `{error}`), and has one stream of CBOR-encoded live-query
// notifications for everything running on it. The bridge therefore forwards
// request bytes almost untouched: it only splices the top-level `session` key
// and wraps replies as `{id, result}` / `{id, error}`, without re-encoding any
// value, so record ids, datetimes, decimals, floats and the like reach the
// engine and the client byte for byte as a real server would send them.
//
// Sessions. All connections share one engine (one in-memory datastore), and
// each WebSocket connection gets its own engine session, made with the
// engine's `attach` RPC: namespace/database (`use`), auth (`signin`,
// `authenticate`, `invalidate`), variables (`let`/`unset`) and live queries
// are per connection, as on a real server. Sessions a client attaches itself
// (`attach`/`detach` with a `session` id, SurrealDB 3 multi-session RPC) are
// mapped to fresh engine session ids private to that connection. When a
// connection closes, its live queries are killed and its sessions detached.
// Live notifications carry the engine session id; they are routed to the
// connection owning that session and sent as `{result: notification}`, the
// real server's frame, with `session` rewritten to the client's own id (or
// dropped for the connection's default session).
//
// Auth. The embedded engine runs with authentication disabled: every session
// may do anything, signed in or not, and there is no option to enable it. So
// that `signin` behaves as on `surreal start --user root --pass root`, the
// bridge defines the root user `root`/`root` (ROLES OWNER) at startup; signin
// then returns a genuine JWT from the engine and a wrong password is refused.
// With SURREAL_BRIDGE_REQUIRE_AUTH=1 the bridge itself refuses what a real
// server (auth enabled, guests not allowed: `surreal start` without
// `--unauthenticated`/`--allow-guests`) refuses an anonymous session: every
// method that runs statements on the engine (`query`, `info`, `live`, `kill`,
// `run`, `graphql` and the record methods `select`, `create`, `insert`, ...).
// Core 3.0.2 checks this in `Datastore::process_plan` (`check_anon`), so the
// refusal is one RPC error for the whole request, which the bridge sends as the
// engine would have encoded it (surrealdb tests/ws_integration.rs `invalidate`):
//   {cause: NONE, code: -32002, details: {details: {details: {action: "process",
//    actor: "anonymous", resource: "query"}, kind: "NotAllowed"}, kind: "Auth"},
//    kind: "NotAllowed", message: "Anonymous access not allowed: Not enough
//    permissions to perform this action"}
// `use`, `let`/`unset`, `ping`, `version`, `attach`/`detach`/`sessions` and the
// auth methods themselves stay allowed, as there. A session counts as signed in
// once a `signin`, `signup`, `authenticate` or `refresh` on it succeeded, until an
// `invalidate` (or `reset`); each client session (`attach`) starts anonymous.
// Without the variable, every session may do anything.
// What it cannot reproduce is a refusal of under-privileged requests (a
// signed-in user without the rights): tests that need permissions enforced
// need a real `surreal` binary (tests/support/surreal_server.py runs one when
// SURREAL_BIN is set).
//
// Engine behaviour to know about (core 3.0.2, not the bridge: the bridge
// forwards notifications in the order the engine emits them):
// - Live notifications from *separate* transactions can arrive out of commit
//   order, even when each write was awaited before the next was sent (measured:
//   CREATE/UPDATE/DELETE of one record in three awaited queries arrived
//   reordered in ~20% of rounds). Within one transaction (or one statement)
//   they arrive in order. Core 3 delivers notifications asynchronously, so a
//   real server very likely behaves the same; tests must not assume otherwise.
// - `SELECT ... FROM type::table($t) ORDER BY ... LIMIT n` can return the
//   wrong rows; literal table names are fine.

import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";

const HERE = dirname(fileURLToPath(import.meta.url));
const MODULES_ROOT = process.env.SURREAL_BRIDGE_NODE_MODULES || HERE;
const DEBUG = process.env.SURREAL_BRIDGE_DEBUG === "1";
const ROOT_USER = "root";
const ROOT_PASS = "root";
const REQUIRE_AUTH = process.env.SURREAL_BRIDGE_REQUIRE_AUTH === "1";
// The methods a real server refuses an anonymous session (they run statements).
const NEEDS_AUTH = new Set([
  "query", "info", "live", "kill", "run", "graphql", "select", "insert", "insert_relation",
  "create", "upsert", "update", "merge", "patch", "delete", "relate",
]);
// Methods whose success signs a session in, and those that sign it out.
const SIGNS_IN = new Set(["signin", "signup", "authenticate", "refresh"]);
const SIGNS_OUT = new Set(["invalidate", "reset"]);

const log = (...args) => process.stderr.write(`[bridge] ${args.join(" ")}\n`);
const debug = DEBUG ? log : () => {};

const portArgument = process.argv[2] ?? process.env.SURREAL_BRIDGE_PORT ?? "0";
const requestedPort = /^\d+$/.test(portArgument) ? Number(portArgument) : -1;
if (requestedPort < 0 || requestedPort > 65535) {
  log(`invalid port: ${portArgument}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------
// Loading the engine and `ws`

const requireFromRoot = createRequire(join(MODULES_ROOT, "package.json"));
const { WebSocketServer } = requireFromRoot("ws");

function isMusl() {
  try {
    const report = process.report?.getReport?.();
    return !report?.header?.glibcVersionRuntime;
  } catch {
    return false;
  }
}

// `@surrealdb/node` exports only its ESM wrapper, which needs the `surrealdb`
// JS SDK and re-encodes every request through it. The native addon it wraps
// is the engine's raw CBOR RPC interface, which is exactly what a bridge
// needs, so load that directly, choosing the build the same way the wrapper
// does (the package ships every platform's build in `dist/`).
function loadNativeEngine() {
  const dist = join(MODULES_ROOT, "node_modules", "@surrealdb", "node", "dist");
  const { platform, arch } = process;
  const candidates = [];
  if (platform === "linux") candidates.push(`linux-${arch}-${isMusl() ? "musl" : "gnu"}`);
  else if (platform === "darwin") candidates.push("darwin-universal", `darwin-${arch}`);
  else if (platform === "win32") candidates.push(`win32-${arch}-msvc`);
  else candidates.push(`${platform}-${arch}`);
  const tried = [];
  for (const triple of candidates) {
    const file = join(dist, `surrealdb-node.${triple}.node`);
    tried.push(file);
    if (existsSync(file)) return requireFromRoot(file);
  }
  throw new Error(`no @surrealdb/node native build for ${platform}/${arch}; looked for: ${tried.join(", ")}`);
}

// ---------------------------------------------------------------------------
// Minimal CBOR: enough to read the top level of a message, keep each value's
// raw bytes, decode the few small values the bridge looks at, and write maps
// whose values are raw bytes.

class Tagged {
  constructor(tag, value) {
    this.tag = tag;
    this.value = value;
  }
}

const BREAK = Symbol("break");

function readHead(buf, pos) {
  const initial = buf[pos];
  if (initial === undefined) throw new Error("CBOR: unexpected end of input");
  const major = initial >> 5;
  const info = initial & 31;
  let arg;
  let next = pos + 1;
  if (info < 24) arg = info;
  else if (info === 24) (arg = buf[next]), (next += 1);
  else if (info === 25) (arg = buf.readUInt16BE(next)), (next += 2);
  else if (info === 26) (arg = buf.readUInt32BE(next)), (next += 4);
  else if (info === 27) {
    const big = buf.readBigUInt64BE(next);
    arg = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    next += 8;
  } else if (info === 31) arg = -1; // indefinite length (or break for major 7)
  else throw new Error(`CBOR: reserved additional info ${info}`);
  if (next > buf.length) throw new Error("CBOR: unexpected end of input");
  return { major, info, arg, next };
}

function halfToFloat(h) {
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * 2 ** -14 * (mant / 1024);
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + mant / 1024);
}

// Decode one item at `pos`; returns [value, nextPos]. Maps become plain
// objects with string keys, tags become `Tagged`, byte strings `Buffer`s.
function decodeAt(buf, pos) {
  const { major, info, arg, next } = readHead(buf, pos);
  switch (major) {
    case 0:
      return [arg, next];
    case 1:
      return [typeof arg === "bigint" ? -1n - arg : -1 - arg, next];
    case 2:
    case 3: {
      let bytes;
      let end;
      if (arg === -1) {
        const chunks = [];
        let p = next;
        while (buf[p] !== 0xff) {
          const [chunk, after] = decodeAt(buf, p);
          chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, "utf8"));
          p = after;
        }
        bytes = Buffer.concat(chunks);
        end = p + 1;
      } else {
        end = next + Number(arg);
        if (end > buf.length) throw new Error("CBOR: unexpected end of input");
        bytes = buf.subarray(next, end);
      }
      return [major === 2 ? Buffer.from(bytes) : bytes.toString("utf8"), end];
    }
    case 4: {
      const out = [];
      let p = next;
      for (let i = 0; arg === -1 || i < arg; i++) {
        if (arg === -1 && buf[p] === 0xff) return [out, p + 1];
        const [item, after] = decodeAt(buf, p);
        out.push(item);
        p = after;
      }
      return [out, p];
    }
    case 5: {
      const out = {};
      let p = next;
      for (let i = 0; arg === -1 || i < arg; i++) {
        if (arg === -1 && buf[p] === 0xff) return [out, p + 1];
        const [key, afterKey] = decodeAt(buf, p);
        const [value, afterValue] = decodeAt(buf, afterKey);
        out[String(key)] = value;
        p = afterValue;
      }
      return [out, p];
    }
    case 6: {
      const [value, after] = decodeAt(buf, next);
      return [new Tagged(arg, value), after];
    }
    default: {
      if (info === 20) return [false, next];
      if (info === 21) return [true, next];
      if (info === 22) return [null, next];
      if (info === 23) return [undefined, next];
      if (info === 25) return [halfToFloat(buf.readUInt16BE(pos + 1)), next];
      if (info === 26) return [buf.readFloatBE(pos + 1), next];
      if (info === 27) return [buf.readDoubleBE(pos + 1), next];
      if (info === 31) return [BREAK, next];
      return [new Tagged(-1, arg), next]; // other simple value
    }
  }
}

function decode(buf) {
  return decodeAt(buf, 0)[0];
}

// Byte offset just past the item starting at `pos`, without building values.
function skip(buf, pos) {
  const { major, arg, next } = readHead(buf, pos);
  if (major === 0 || major === 1 || major === 7) return next;
  if (major === 6) return skip(buf, next);
  if (major === 2 || major === 3) {
    if (arg !== -1) return next + Number(arg);
    let p = next;
    while (buf[p] !== 0xff) p = skip(buf, p);
    return p + 1;
  }
  const per = major === 5 ? 2 : 1;
  let p = next;
  if (arg === -1) {
    while (buf[p] !== 0xff) p = skip(buf, p);
    return p + 1;
  }
  for (let i = 0; i < arg * per; i++) p = skip(buf, p);
  return p;
}

// The top-level map of a message as Map<key, rawValueBytes>, in order.
function topLevelEntries(buf) {
  const { major, arg, next } = readHead(buf, 0);
  if (major !== 5) throw new Error("CBOR: message is not a map");
  const entries = new Map();
  let p = next;
  for (let i = 0; arg === -1 || i < arg; i++) {
    if (arg === -1 && buf[p] === 0xff) break;
    const [key, afterKey] = decodeAt(buf, p);
    const end = skip(buf, afterKey);
    entries.set(String(key), buf.subarray(afterKey, end));
    p = end;
  }
  return entries;
}

function head(major, n) {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

function encText(s) {
  const bytes = Buffer.from(s, "utf8");
  return Buffer.concat([head(3, bytes.length), bytes]);
}

function encUuid(uuid) {
  const bytes = Buffer.from(uuid.replace(/-/g, ""), "hex");
  return Buffer.concat([Buffer.from([0xd8, 37]), head(2, 16), bytes]);
}

// A map from [key, rawValueBytes] pairs.
function encMap(pairs) {
  return Buffer.concat([head(5, pairs.length), ...pairs.flatMap(([k, v]) => [encText(k), v])]);
}

const NULL_BYTES = Buffer.from([0xf6]);

function uuidString(value) {
  // A uuid arrives as a string, or as tag 37 around 16 bytes.
  if (typeof value === "string") return value.toLowerCase();
  if (value instanceof Tagged && value.tag === 37 && Buffer.isBuffer(value.value)) {
    const h = value.value.toString("hex");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  return null;
}

// ---------------------------------------------------------------------------
// The engine

const { SurrealNodeEngine } = loadNativeEngine();
const STORE = process.env.SURREAL_BRIDGE_STORE || "mem://";
const engine = await SurrealNodeEngine.connect(STORE, undefined);
const notifications = await engine.notifications();

async function execute(payload) {
  return Buffer.from(await engine.execute(payload));
}

// The engine answers with the bare result, or with `{error: {code, message, ...}}`.
function splitReply(raw) {
  if (raw[0] === 0xa1) {
    try {
      const entries = topLevelEntries(raw);
      const error = entries.get("error");
      if (error) {
        const value = decode(error);
        if (value && typeof value === "object" && "code" in value && "message" in value) {
          return { error };
        }
      }
    } catch {
      // not a map we understand: a result
    }
  }
  return { result: raw };
}

let nextAdminId = 0;
// A request made by the bridge itself; resolves to the decoded result, throws on error.
async function adminCall(method, params, session) {
  const pairs = [
    ["id", encText(`bridge-${nextAdminId++}`)],
    ["method", encText(method)],
  ];
  if (params) pairs.push(["params", Buffer.concat([head(4, params.length), ...params])]);
  if (session) pairs.push(["session", encText(session)]);
  const reply = splitReply(await execute(encMap(pairs)));
  if (reply.error) throw new Error(`${method}: ${JSON.stringify(decode(reply.error).message)}`);
  return decode(reply.result);
}

const VERSION = await adminCall("version", null);
await adminCall("query", [
  encText(`DEFINE USER OVERWRITE ${ROOT_USER} ON ROOT PASSWORD '${ROOT_PASS}' ROLES OWNER`),
  Buffer.from([0xa0]),
]);

// ---------------------------------------------------------------------------
// Connections and their sessions

// What a real server answers an anonymous session's query (SURREAL_BRIDGE_REQUIRE_AUTH; see Auth above):
// core 3.0.2's `TypesError::not_allowed(.., AuthError::NotAllowed {..})`, its keys in the engine's order.
const ANONYMOUS_REFUSED = encMap([
  ["cause", Buffer.from([0xc6, 0xf6])], // NONE
  ["code", encodeInt(-32002)],
  [
    "details",
    encMap([
      [
        "details",
        encMap([
          [
            "details",
            encMap([
              ["action", encText("process")],
              ["actor", encText("anonymous")],
              ["resource", encText("query")],
            ]),
          ],
          ["kind", encText("NotAllowed")],
        ]),
      ],
      ["kind", encText("Auth")],
    ]),
  ],
  ["kind", encText("NotAllowed")],
  ["message", encText("Anonymous access not allowed: Not enough permissions to perform this action")],
]);

// engine session id -> { conn, clientSession (null for the default session) }
const sessionOwners = new Map();
// live query id -> engine session id that started it
const liveOwners = new Map();
const connections = new Set();

class Connection {
  constructor(ws) {
    this.ws = ws;
    this.defaultSession = randomUUID();
    this.clientSessions = new Map(); // client session id -> engine session id
    this.signedIn = new Set(); // engine session ids that signed in (SURREAL_BRIDGE_REQUIRE_AUTH)
    this.closed = false;
    sessionOwners.set(this.defaultSession, { conn: this, clientSession: null });
    this.ready = adminCall("attach", null, this.defaultSession);
    connections.add(this);
  }

  send(bytes) {
    if (!this.closed && this.ws.readyState === this.ws.OPEN) this.ws.send(bytes, { binary: true });
  }

  engineSession(clientSession) {
    return this.clientSessions.get(clientSession) ?? clientSession;
  }

  async handle(data) {
    await this.ready;
    const raw = Buffer.isBuffer(data) ? data : Buffer.from(data);
    let entries;
    let method;
    let clientSession = null;
    try {
      entries = topLevelEntries(raw);
      method = entries.has("method") ? decode(entries.get("method")) : undefined;
      if (entries.has("session")) clientSession = uuidString(decode(entries.get("session")));
    } catch (err) {
      this.reply(null, { message: `Parse error: ${err.message}`, code: -32700 });
      return;
    }
    const id = entries.get("id") ?? null;
    if (entries.has("session") && clientSession === null) {
      this.reply(id, { message: "Invalid params: session must be a uuid", code: -32602 });
      return;
    }

    let session;
    let attaching = false; // this request makes a new client session
    if (clientSession === null) {
      session = this.defaultSession;
    } else if (method === "attach" && !this.clientSessions.has(clientSession)) {
      attaching = true;
      session = randomUUID();
      this.clientSessions.set(clientSession, session);
      sessionOwners.set(session, { conn: this, clientSession });
    } else {
      // An id this connection never attached is passed through unchanged: the
      // engine does not know it either (its own ids are fresh random ones), so
      // it answers "Session not found" naming the client's id.
      session = this.engineSession(clientSession);
    }
    debug(`${method} session=${clientSession ?? "default"}`);

    // A session this connection knows (an unknown one is left to the engine: "Session not found").
    const known = clientSession === null || this.clientSessions.has(clientSession);
    if (REQUIRE_AUTH && known && NEEDS_AUTH.has(method) && !this.signedIn.has(session)) {
      debug(`refused ${method}: session ${clientSession ?? "default"} has not signed in`);
      this.sendReply(id, "error", ANONYMOUS_REFUSED);
      return;
    }

    // A detached session's live queries would go on firing with nobody to
    // receive them (the engine keeps them), so end them first, as a closing
    // connection does.
    if (method === "detach" && clientSession !== null) await this.killLiveQueries(session);

    const forwarded = [...entries].filter(([key]) => key !== "session");
    forwarded.push(["session", encText(session)]);
    let rawReply;
    try {
      rawReply = await execute(encMap(forwarded));
    } catch (err) {
      this.reply(id, { message: `Internal error: ${err?.message ?? err}`, code: -32000 });
      if (attaching) this.forgetSession(clientSession);
      return;
    }
    const reply = splitReply(rawReply);
    if (reply.error) {
      if (attaching) this.forgetSession(clientSession);
      this.sendReply(id, "error", reply.error);
      return;
    }
    if (method === "detach" && clientSession !== null) this.forgetSession(clientSession);
    if (SIGNS_IN.has(method)) this.signedIn.add(session);
    else if (SIGNS_OUT.has(method)) this.signedIn.delete(session);
    if (method === "live") this.trackLive(decode(reply.result), session);
    else if (method === "query") this.trackLiveStatements(entries, reply.result, session);
    this.sendReply(id, "result", reply.result);
  }

  forgetSession(clientSession) {
    const session = this.clientSessions.get(clientSession);
    if (session === undefined) return;
    this.clientSessions.delete(clientSession);
    this.signedIn.delete(session);
    sessionOwners.delete(session);
  }

  trackLive(value, session) {
    const liveId = uuidString(value);
    if (liveId) liveOwners.set(liveId, session);
  }

  // `LIVE SELECT` inside a query: its statement result has `type: "live"`.
  trackLiveStatements(entries, rawResult, session) {
    try {
      const params = decode(entries.get("params"));
      if (!Array.isArray(params) || typeof params[0] !== "string" || !/live/i.test(params[0])) return;
      const results = decode(rawResult);
      if (!Array.isArray(results)) return;
      for (const statement of results) {
        if (statement && statement.type === "live" && statement.status === "OK") {
          this.trackLive(statement.result, session);
        }
      }
    } catch (err) {
      debug(`could not inspect query result for live ids: ${err.message}`);
    }
  }

  async killLiveQueries(session) {
    for (const [liveId, owner] of liveOwners) {
      if (owner !== session) continue;
      liveOwners.delete(liveId);
      try {
        await adminCall("kill", [encUuid(liveId)], session);
      } catch (err) {
        // Already killed by the client, or its session moved namespace.
        debug(`kill ${liveId} on close: ${err.message}`);
      }
    }
  }

  reply(id, error) {
    const pairs = [
      ["code", Buffer.from(encodeInt(error.code))],
      ["message", encText(error.message)],
    ];
    this.sendReply(id, "error", encMap(pairs));
  }

  sendReply(id, key, rawValue) {
    this.send(encMap([["id", id ?? NULL_BYTES], [key, rawValue]]));
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    connections.delete(this);
    try {
      await this.ready;
    } catch {
      return;
    }
    const sessions = [...this.clientSessions.values(), this.defaultSession];
    for (const session of sessions) {
      await this.killLiveQueries(session);
      try {
        await adminCall("detach", null, session);
      } catch (err) {
        debug(`detach ${session}: ${err.message}`);
      }
      sessionOwners.delete(session);
    }
    this.clientSessions.clear();
  }
}

function encodeInt(n) {
  return n >= 0 ? head(0, n) : head(1, -1 - n);
}

// The engine's single notification stream, fanned out by session.
async function pumpNotifications() {
  for (;;) {
    let value;
    try {
      value = await notifications.recv();
    } catch (err) {
      log(`notification stream failed: ${err?.message ?? err}`);
      return;
    }
    if (value === null) return;
    try {
      const raw = Buffer.from(value);
      const entries = topLevelEntries(raw);
      const liveId = entries.has("id") ? uuidString(decode(entries.get("id"))) : null;
      // `KILLED` notifications carry no session (it is null): find it from the live query instead.
      const session =
        (entries.has("session") && uuidString(decode(entries.get("session")))) ||
        (liveId && liveOwners.get(liveId)) ||
        null;
      if (decode(entries.get("action") ?? NULL_BYTES) === "KILLED" && liveId) liveOwners.delete(liveId);
      const owner = session && sessionOwners.get(session);
      if (!owner) {
        debug(`dropping notification for live query ${liveId}: session ${session} is gone`);
        continue;
      }
      const pairs = [...entries].filter(([key]) => key !== "session");
      if (owner.clientSession !== null) pairs.push(["session", encUuid(owner.clientSession)]);
      owner.conn.send(encMap([["result", encMap(pairs)]]));
    } catch (err) {
      log(`could not route a notification: ${err?.message ?? err}`);
    }
  }
}
const pump = pumpNotifications();

// ---------------------------------------------------------------------------
// The server

const server = http.createServer((req, res) => {
  // Plain HTTP, as a real server answers it: enough for readiness probes.
  if (req.url === "/health" || req.url === "/status") {
    res.writeHead(200).end();
  } else if (req.url === "/version") {
    res.writeHead(200, { "content-type": "text/plain" }).end(String(VERSION));
  } else {
    res.writeHead(404).end();
  }
});

const wss = new WebSocketServer({
  server,
  path: "/rpc",
  maxPayload: 1024 * 1024 * 1024,
  handleProtocols: (protocols) => (protocols.has("cbor") ? "cbor" : false),
});

wss.on("connection", (ws, req) => {
  if (ws.protocol !== "cbor") {
    // Only the CBOR format is implemented; the engine speaks nothing else.
    ws.close(1002, "only the cbor subprotocol is supported");
    return;
  }
  const conn = new Connection(ws);
  debug(`connection from ${req.socket.remotePort}`);
  // Requests on one connection run concurrently, as on a real server; each
  // still waits for the connection's session to be attached first.
  ws.on("message", (data, isBinary) => {
    if (!isBinary) {
      conn.reply(null, { message: "Parse error: expected a binary CBOR frame", code: -32700 });
      return;
    }
    conn.handle(data).catch((err) => log(`request failed: ${err?.stack ?? err}`));
  });
  ws.on("close", () => {
    conn.close().catch((err) => log(`cleanup failed: ${err?.stack ?? err}`));
  });
  ws.on("error", (err) => debug(`socket error: ${err.message}`));
});

// `ws` re-emits the HTTP server's errors (EADDRINUSE and the like) on itself.
for (const emitter of [server, wss]) {
  emitter.on("error", (err) => {
    log(`cannot serve on 127.0.0.1:${requestedPort}: ${err.message}`);
    process.exit(1);
  });
}

server.listen(requestedPort, "127.0.0.1", () => {
  process.stdout.write(`READY ws://127.0.0.1:${server.address().port}\n`);
});

let stopping = false;
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.terminate();
  wss.close();
  server.close();
  try {
    engine.free();
  } catch {
    // already gone
  }
  await Promise.race([pump, new Promise((resolve) => setTimeout(resolve, 500))]);
  process.exit(code);
}

process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));
if (process.env.SURREAL_BRIDGE_WATCH_STDIN === "1") {
  process.stdin.on("data", () => {});
  process.stdin.on("end", () => shutdown(0));
  process.stdin.on("error", () => shutdown(0));
}
