// `BusinessHours` ESP service, written in JavaScript (componentize-js).
//
// Method `IsOpen`:
//   Timezone  "UTC", a fixed offset such as "+02:00" / "-05:30", or one of
//             the zone names below (EU and US daylight-saving rules are
//             applied); optional when the cluster config sets `timezone`.
//   At        optional: Unix seconds (integer) or an ISO 8601 string;
//             default: now.
// Answer: Open (1/0), LocalTime, and NextChange (Unix seconds) plus
// NextChangeLocal when the state changes within the next 8 days.
//
// Opening hours come from the cluster's config table (wasp:esp/config):
//   mon = "09:00-17:00"  ...  sun = "10:00-12:00,13:00-16:00"
// A day without a key is closed. Built on the SDK in sdk/js (wasp-sdk.js).
// Faults (ESP 3005, ComponentFaultCode): 2 bad or missing Timezone, 3 bad At,
//   4 bad opening hours in the cluster config.

import { defineService, Fault, config, log } from './wasp-sdk.js';

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const MIN = 60 * 1000;
const DAY = 24 * 60 * MIN;

// name -> [standard offset in minutes, DST rule]
const ZONES = {
  'UTC': [0, null],
  'Europe/London': [0, 'eu'],
  'Europe/Dublin': [0, 'eu'],
  'Europe/Lisbon': [0, 'eu'],
  'Europe/Berlin': [60, 'eu'],
  'Europe/Paris': [60, 'eu'],
  'Europe/Madrid': [60, 'eu'],
  'Europe/Rome': [60, 'eu'],
  'Europe/Amsterdam': [60, 'eu'],
  'Europe/Helsinki': [120, 'eu'],
  'America/New_York': [-300, 'us'],
  'America/Chicago': [-360, 'us'],
  'America/Denver': [-420, 'us'],
  'America/Los_Angeles': [-480, 'us'],
  'Asia/Kolkata': [330, null],
  'Asia/Tokyo': [540, null],
};

// The n-th (1-based; -1 = last) Sunday of a month, as a UTC day start.
function sunday(year, month, n) {
  if (n < 0) {
    const last = Date.UTC(year, month + 1, 0);
    return last - new Date(last).getUTCDay() * DAY;
  }
  const first = Date.UTC(year, month, 1);
  const dow = new Date(first).getUTCDay();
  return first + ((7 - dow) % 7) * DAY + (n - 1) * 7 * DAY;
}

function dstActive(rule, std, utcMs) {
  const year = new Date(utcMs).getUTCFullYear();
  if (rule === 'eu') {
    // Last Sunday of March to last Sunday of October, 01:00 UTC.
    return utcMs >= sunday(year, 2, -1) + 60 * MIN && utcMs < sunday(year, 9, -1) + 60 * MIN;
  }
  if (rule === 'us') {
    // Second Sunday of March 02:00 local standard time to first Sunday of
    // November 02:00 local daylight time.
    const start = sunday(year, 2, 2) + 120 * MIN - std * MIN;
    const end = sunday(year, 10, 1) + 120 * MIN - (std + 60) * MIN;
    return utcMs >= start && utcMs < end;
  }
  return false;
}

// Returns a function: UTC ms -> offset in minutes.
function parseZone(text) {
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(text);
  if (m) {
    const off = (Number(m[2]) * 60 + Number(m[3])) * (m[1] === '-' ? -1 : 1);
    if (Number(m[2]) > 14 || Number(m[3]) > 59) throw new Fault(2, `Timezone '${text}' is out of range`);
    return () => off;
  }
  const zone = ZONES[text];
  if (!zone) {
    throw new Fault(2, `unknown Timezone '${text}': use UTC, an offset like +02:00, or one of ${Object.keys(ZONES).join(', ')}`);
  }
  const [std, rule] = zone;
  return (utcMs) => std + (dstActive(rule, std, utcMs) ? 60 : 0);
}

function parseClock(text, key) {
  const m = /^(\d{2}):(\d{2})$/.exec(text);
  if (!m || Number(m[1]) > 24 || Number(m[2]) > 59 || (Number(m[1]) === 24 && Number(m[2]) !== 0)) {
    throw new Fault(4, `config '${key}': '${text}' is not a time HH:MM`);
  }
  return Number(m[1]) * 60 + Number(m[2]);
}

// { dayIndex: [[startMin, endMin], ...] } from the cluster config.
function openingHours() {
  const hours = {};
  let any = false;
  for (const [key, value] of config.all()) {
    const day = DAYS.indexOf(key);
    if (day < 0) continue;
    hours[day] = value.split(',').map((range) => {
      const parts = range.trim().split('-');
      if (parts.length !== 2) throw new Fault(4, `config '${key}': '${range}' is not a range HH:MM-HH:MM`);
      const [s, e] = parts.map((p) => parseClock(p.trim(), key));
      if (e <= s) throw new Fault(4, `config '${key}': range '${range}' ends before it starts`);
      return [s, e];
    });
    any = true;
  }
  if (!any) throw new Fault(4, 'no opening hours configured: set mon..sun in the cluster config');
  return hours;
}

function parseAt(value) {
  if (value === undefined) return Date.now();
  if (typeof value === 'number') return value * 1000;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    if (Number.isNaN(ms)) throw new Fault(3, `At '${value}' is not an ISO 8601 time`);
    return ms;
  }
  throw new Fault(3, 'At must be Unix seconds or an ISO 8601 string');
}

function localString(utcMs, offset) {
  const d = new Date(utcMs + offset * MIN).toISOString().slice(0, 16);
  const sign = offset < 0 ? '-' : '+';
  const a = Math.abs(offset);
  return `${d}${sign}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

function isOpen(hours, zone, utcMs) {
  const local = utcMs + zone(utcMs) * MIN;
  const d = new Date(local);
  const minute = d.getUTCHours() * 60 + d.getUTCMinutes();
  return (hours[d.getUTCDay()] || []).some(([s, e]) => minute >= s && minute < e);
}

// The first instant after `now` at which the open state differs, if any
// within 8 days. The state can only change at a range boundary.
function nextChange(hours, zone, now, open) {
  const localNow = now + zone(now) * MIN;
  const today = Math.floor(localNow / DAY) * DAY;
  const candidates = [];
  for (let i = -1; i <= 8; i++) {
    const dayStart = today + i * DAY;
    const ranges = hours[new Date(dayStart).getUTCDay()] || [];
    for (const [s, e] of ranges) {
      for (const m of [s, e]) {
        const local = dayStart + m * MIN;
        const utc = local - zone(local - zone(local) * MIN) * MIN;
        if (utc > now) candidates.push(utc);
      }
    }
  }
  candidates.sort((a, b) => a - b);
  return candidates.find((t) => isOpen(hours, zone, t) !== open);
}

export const service = defineService({
  type: 'BusinessHours',
  version: '1.0',
  methods: {
    IsOpen(req) {
      const tzName = req.params.optStr('Timezone', config.get('timezone'), { typeCode: 2 });
      if (tzName === undefined) throw new Fault(2, "missing parameter 'Timezone' (and no timezone in the cluster config)");
      const zone = parseZone(tzName);
      const now = parseAt(req.params.get('At'));
      const hours = openingHours();
      const open = isOpen(hours, zone, now);
      const answer = { Open: open, LocalTime: localString(now, zone(now)) };
      const next = nextChange(hours, zone, now, open);
      if (next !== undefined) {
        answer.NextChange = Math.floor(next / 1000);
        answer.NextChangeLocal = localString(next, zone(next));
      }
      log.debug('business hours checked', { timezone: tzName, open });
      return answer;
    },
  },
});
