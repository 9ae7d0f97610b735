// wasp-sdk: ESP services for wasp in a few lines of JavaScript
// (componentize-js). Copy this file next to your app.js (`wasp new js`
// does) and import it:
//
//   import { defineService, Fault, log, config, store } from './wasp-sdk.js';
//
//   export const service = defineService({
//     type: 'Greeter', version: '1.0',
//     methods: {
//       Greet(req) {
//         const name = req.params.getStr('Name'); // missing/mistyped -> fault
//         return { Greeting: `Hello, ${name}`, Tenant: req.tenant.id };
//       },
//     },
//   });
//
// Values: a JS integer or BigInt is an ESP integer (a Kv returns BigInt
// only beyond 2^53), a string a string, a Uint8Array a binary, a plain
// object or Kv a nested list; booleans are sent as 1/0.

import { log as witLog } from 'wasp:esp/log@0.1.0';
import { get as witConfigGet, getAll as witConfigGetAll } from 'wasp:esp/config@0.1.0';
import * as witStore from 'wasp:esp/store@0.1.0';

// Fault codes for the common cases (the same as the Rust SDK's `codes`).
// The host answers every fault as ESP fault 3005 with ComponentFaultCode.
export const codes = {
  MISSING_PARAMETER: 1,
  INVALID_PARAMETER: 2,
  UNKNOWN_METHOD: 3,
  NOT_FOUND: 4,
  LIMIT_REACHED: 5,
  INTERNAL: 100,
};

// Throw it to answer the request with a fault (ESP 3005). The bindings
// turn an error with an own `payload` property into `err(payload)`.
export class Fault extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.payload = { code, message };
  }
}

function typeName(v) {
  if (v instanceof Kv) return 'a list';
  if (v instanceof Uint8Array) return 'a binary';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number' || typeof v === 'bigint') return 'an integer';
  return typeof v;
}

const KINDS = {
  str: [(v) => typeof v === 'string', 'a string'],
  int: [(v) => typeof v === 'number' || typeof v === 'bigint', 'an integer'],
  bytes: [(v) => v instanceof Uint8Array, 'a binary'],
  list: [(v) => v instanceof Kv, 'a list'],
};

function toValue(key, v) {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Fault(codes.INTERNAL, `'${key}': cannot send ${v} in a KV list (integers only)`);
    return v;
  }
  if (typeof v === 'bigint' || typeof v === 'string' || v instanceof Uint8Array || v instanceof Kv) return v;
  if (v !== null && typeof v === 'object') return new Kv(v);
  throw new Fault(codes.INTERNAL, `'${key}': cannot send ${typeof v} in a KV list`);
}

// An ordered ESP KV list: [key, value] pairs, keys may repeat. get* look
// at the first pair with the key.
export class Kv {
  constructor(init) {
    this.pairs = [];
    if (Array.isArray(init)) for (const [k, v] of init) this.add(k, v);
    else if (init) for (const [k, v] of Object.entries(init)) this.add(k, v);
  }
  add(key, value) { this.pairs.push([key, toValue(key, value)]); return this; }
  has(key) { return this.pairs.some(([k]) => k === key); }
  get(key) { const p = this.pairs.find(([k]) => k === key); return p ? p[1] : undefined; }
  typed(key, kind, { required = true, missingCode = codes.MISSING_PARAMETER, typeCode = codes.INVALID_PARAMETER } = {}) {
    const v = this.get(key);
    if (v === undefined) {
      if (required) throw new Fault(missingCode, `missing parameter '${key}'`);
      return undefined;
    }
    const [ok, name] = KINDS[kind];
    if (!ok(v)) throw new Fault(typeCode, `parameter '${key}' must be ${name}, not ${typeName(v)}`);
    return v;
  }
  // The string under `key`; a fault when it is missing or not a string.
  getStr(key, opts) { return this.typed(key, 'str', opts); }
  // The integer under `key` (a Number, or a BigInt beyond 2^53).
  getInt(key, opts) { return this.typed(key, 'int', opts); }
  getBytes(key, opts) { return this.typed(key, 'bytes', opts); }
  getList(key, opts) { return this.typed(key, 'list', opts); }
  // Optional: `fallback` when missing, a fault when mistyped.
  optStr(key, fallback, opts) { return this.typed(key, 'str', { ...opts, required: false }) ?? fallback; }
  optInt(key, fallback, opts) { return this.typed(key, 'int', { ...opts, required: false }) ?? fallback; }
  toObject() {
    const o = {};
    for (const [k, v] of this.pairs) o[k] = v instanceof Kv ? v.toObject() : v;
    return o;
  }

  static fromWit(arena) {
    const build = (i) => {
      const kv = new Kv();
      for (const { key, value } of arena.lists[i]) {
        let v = value.val;
        if (value.tag === 'nested') v = build(value.val); // forward indexes only
        else if (value.tag === 'int') v = Number.isSafeInteger(Number(v)) ? Number(v) : v;
        kv.pairs.push([key, v]);
      }
      return kv;
    };
    return arena.lists.length ? build(0) : new Kv();
  }

  toWit() {
    const lists = [];
    const add = (kv) => {
      const index = lists.length;
      lists.push(null);
      lists[index] = kv.pairs.map(([key, v]) => {
        if (v instanceof Kv) return { key, value: { tag: 'nested', val: add(v) } };
        if (typeof v === 'number' || typeof v === 'bigint') return { key, value: { tag: 'int', val: BigInt(v) } };
        if (typeof v === 'string') return { key, value: { tag: 'str', val: v } };
        return { key, value: { tag: 'binary', val: v } };
      });
      return index;
    };
    add(this);
    return { lists };
  }
}

// The service export: `export const service = defineService({ type,
// version, methods: { Name(req) {...} } })`. A method returns a plain
// object or a Kv; it throws a Fault for a fault. `req` has service,
// method, version, tenant {id, name}, mediaType, params and userData (Kv).
export function defineService({ type, version = '1.0', methods }) {
  return {
    describe() {
      return { serviceType: type, version, methods: Object.keys(methods) };
    },
    handle(raw) {
      const fn = methods[raw.method];
      if (!fn) throw new Fault(codes.UNKNOWN_METHOD, `unknown method '${raw.method}'`);
      const req = {
        service: raw.service,
        method: raw.method,
        version: raw.version,
        tenant: { id: raw.tenant.id, name: raw.tenant.name },
        mediaType: raw.mediaType,
        params: Kv.fromWit(raw.parameters),
        userData: Kv.fromWit(raw.userData),
      };
      const result = fn(req);
      return (result instanceof Kv ? result : new Kv(result ?? {})).toWit();
    },
  };
}

function emit(level, message, fields) {
  witLog(level, String(message), Object.entries(fields ?? {}).map(([k, v]) => [k, String(v)]));
}

// Structured log lines into the host's log; the host adds tenant, cluster
// and instance, clips long messages (4 KiB) and values (1 KiB), and writes
// at most `log-per-second` lines. log.info('sent', { jobId: id })
export const log = {
  trace: (message, fields) => emit('trace', message, fields),
  debug: (message, fields) => emit('debug', message, fields),
  info: (message, fields) => emit('info', message, fields),
  warn: (message, fields) => emit('warn', message, fields),
  error: (message, fields) => emit('error', message, fields),
};

// The cluster's [clusters.<name>.config] table.
export const config = {
  get: (key, fallback) => witConfigGet(key) ?? fallback,
  // An integer, `fallback` when unset; a fault naming the key otherwise.
  getInt(key, fallback) {
    const v = witConfigGet(key);
    if (v === undefined) return fallback;
    if (!/^\s*-?\d+\s*$/.test(v)) throw new Fault(codes.INTERNAL, `config '${key}': '${v}' is not a whole number`);
    return Number(v);
  },
  // All values as [key, value] pairs, sorted by key.
  all: () => witConfigGetAll(),
};

function storeCall(fn) {
  try {
    return fn();
  } catch (e) {
    // A result's err(string) arrives as an error whose payload is the string.
    const message = String(e?.payload ?? e?.message ?? e);
    throw new Fault(message.startsWith('store: full:') ? codes.LIMIT_REACHED : codes.INTERNAL, message);
  }
}

const bytes = (v) => (typeof v === 'string' ? new TextEncoder().encode(v) : v);

// The cluster's key-value store, scoped to the request's tenant; granted
// by [clusters.<name>.store]. Errors are faults: LIMIT_REACHED when a
// bound was hit (the message names it), INTERNAL otherwise.
export const store = {
  get: (key) => storeCall(() => witStore.get(key)), // Uint8Array or undefined
  getStr(key) {
    const v = store.get(key);
    return v === undefined ? undefined : new TextDecoder().decode(v);
  },
  // value: string or Uint8Array; ttl in seconds (>= 1) makes it expire.
  set: (key, value, ttl) => storeCall(() => (ttl === undefined
    ? witStore.set(key, bytes(value))
    : witStore.setWithTtl(key, bytes(value), ttl))),
  delete: (key) => storeCall(() => witStore['delete'](key)),
  keys: (prefix = '') => storeCall(() => witStore.keys(prefix)),
  increment: (key, delta = 1) => Number(storeCall(() => witStore.increment(key, BigInt(delta)))),
  compareAndSwap: (key, expected, value) => storeCall(() => witStore.compareAndSwap(
    key, expected === undefined ? undefined : bytes(expected), bytes(value))),
};
