#!/usr/bin/env node
// An upstream SMSC built on the independent node `smpp` package (pinned in
// package.json / package-lock.json), for end-to-end receipt tests: the
// gateway relays to it and must match its receipts, whose ids it makes up
// itself, back to the gateway's own message ids.
//
//   node conformance/interop/node/smsc.js [--host 127.0.0.1] [--port 0]
//       [--system-id ID --password PW] [--id-start N] [--receipt-delay-ms 50]
//       [--deliver-timeout-ms 5000] [--max-pending 100000] [--lifetime-s 300]
//
// - Accepts bind_transmitter, bind_receiver and bind_transceiver (any
//   credentials unless --system-id / --password are given).
// - Answers submit_sm with its own ids: a decimal counter from --id-start.
// - For every submit_sm asking for a receipt (registered_delivery bit 0),
//   after --receipt-delay-ms sends a delivery receipt deliver_sm (esm_class
//   0x04, text `id:<its id> sub:001 dlvrd:001 submit date:... done date:...
//   stat:DELIVRD err:000 text:...`, TLVs receipted_message_id and
//   message_state 2) on a receiver or transceiver session of the same
//   system_id, round robin. A receipt with no such session bound waits
//   until one binds; one not answered ESME_ROK (or not answered within
//   --deliver-timeout-ms) is sent again after a pause. At most --max-pending
//   receipts wait at once; beyond, new ones are dropped and counted.
// - Prints `{"smsc":"node-smpp","port":N}` on stdout once it listens.
// - Exits when stdin closes, on SIGTERM or SIGINT, or after --lifetime-s,
//   printing its counters as one JSON line on stdout.
// Exit status 2 when the smpp package is missing (run `npm ci` in this folder).
'use strict';

let smpp;
try {
  smpp = require('smpp');
} catch (e) {
  console.log(JSON.stringify({ smsc: 'node-smpp', error: `cannot load the smpp package: ${e.message}` }));
  process.exit(2);
}

const ESME_ROK = 0x00;
const ESME_RINVBNDSTS = 0x04;
const ESME_RALYBND = 0x05;
const ESME_RINVPASWD = 0x0e;
const ESME_RINVSYSID = 0x0f;
const STATE_DELIVERED = 2;
const RETRY_PAUSE_MS = 200;

function parseArgs(argv) {
  const options = {
    host: '127.0.0.1',
    port: 0,
    systemId: null,
    password: null,
    idStart: null,
    receiptDelayMs: 50,
    deliverTimeoutMs: 5000,
    maxPending: 100000,
    lifetimeS: 300,
  };
  const numeric = {
    '--port': 'port',
    '--id-start': 'idStart',
    '--receipt-delay-ms': 'receiptDelayMs',
    '--deliver-timeout-ms': 'deliverTimeoutMs',
    '--max-pending': 'maxPending',
    '--lifetime-s': 'lifetimeS',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (value === undefined) usage(`${arg} needs a value`);
    i++;
    if (arg === '--host') options.host = value;
    else if (arg === '--system-id') options.systemId = value;
    else if (arg === '--password') options.password = value;
    else if (numeric[arg]) {
      const n = Number(value);
      if (!Number.isSafeInteger(n) || n < 0) usage(`${arg}: not a whole number: ${value}`);
      options[numeric[arg]] = n;
    } else usage(`unknown option ${arg}`);
  }
  if (options.idStart === null) {
    // From the clock, so that a restarted SMSC does not reuse ids.
    options.idStart = (Date.now() % 1e9) * 1000;
  }
  return options;
}

function usage(message) {
  console.error(`smsc.js: ${message}`);
  console.error('usage: smsc.js [--host H] [--port P] [--system-id ID --password PW] [--id-start N]');
  console.error('               [--receipt-delay-ms MS] [--deliver-timeout-ms MS] [--max-pending N] [--lifetime-s S]');
  process.exit(64);
}

const options = parseArgs(process.argv.slice(2));
const counters = {
  binds: 0,
  binds_refused: 0,
  submits: 0,
  receipts_requested: 0,
  receipts_sent: 0,
  receipts_acked: 0,
  receipts_resent: 0,
  receipts_dropped: 0,
};

let nextId = options.idStart;
/** Bound sessions that can take deliver_sm, per system_id. */
const receivers = new Map();
/** Receipts due and waiting for a receiver, per system_id (FIFO). */
const waiting = new Map();
/** Receipts scheduled, waiting or on the wire (bounded by --max-pending). */
let pending = 0;
const turn = new Map();

function smppDate(d) {
  const two = (n) => String(n).padStart(2, '0');
  return `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}`;
}

function messageText(pdu) {
  const sm = pdu.short_message;
  let text = '';
  if (sm && typeof sm === 'object' && typeof sm.message === 'string') text = sm.message;
  else if (typeof sm === 'string') text = sm;
  return text.replace(/[^A-Za-z0-9 ]/g, '').slice(0, 20);
}

function receiptFor(session, pdu, id) {
  const now = new Date();
  const text = `id:${id} sub:001 dlvrd:001 submit date:${smppDate(now)} done date:${smppDate(now)} stat:DELIVRD err:000 text:${messageText(pdu)}`;
  return {
    systemId: session.systemId,
    fields: {
      source_addr_ton: pdu.dest_addr_ton,
      source_addr_npi: pdu.dest_addr_npi,
      source_addr: pdu.destination_addr,
      dest_addr_ton: pdu.source_addr_ton,
      dest_addr_npi: pdu.source_addr_npi,
      destination_addr: pdu.source_addr,
      esm_class: 0x04,
      data_coding: 0,
      // A Buffer is sent as it is: the receipt text is plain ASCII.
      short_message: Buffer.from(text, 'ascii'),
      receipted_message_id: id,
      message_state: STATE_DELIVERED,
    },
  };
}

/** The next receiver of `systemId`, round robin, or undefined. */
function pickReceiver(systemId) {
  const list = receivers.get(systemId);
  if (!list || list.length === 0) return undefined;
  const i = (turn.get(systemId) || 0) % list.length;
  turn.set(systemId, i + 1);
  return list[i];
}

function enqueue(receipt) {
  let queue = waiting.get(receipt.systemId);
  if (!queue) {
    queue = [];
    waiting.set(receipt.systemId, queue);
  }
  queue.push(receipt);
}

/** Sends what waits for `systemId` while a receiver is bound. */
function flush(systemId) {
  const queue = waiting.get(systemId);
  while (queue && queue.length > 0) {
    const session = pickReceiver(systemId);
    if (!session) return;
    send(session, queue.shift());
  }
}

function send(session, receipt) {
  const entry = { receipt, timer: null };
  const written = session.deliver_sm({ ...receipt.fields }, (resp) => {
    if (!session.inflight.delete(entry)) return;
    clearTimeout(entry.timer);
    if (resp.command_status === ESME_ROK) {
      counters.receipts_acked++;
      pending--;
    } else {
      resend(receipt);
    }
  });
  if (!written) {
    resend(receipt);
    return;
  }
  counters.receipts_sent++;
  session.inflight.add(entry);
  entry.timer = setTimeout(() => {
    if (session.inflight.delete(entry)) resend(receipt);
  }, options.deliverTimeoutMs);
}

/** Sends a receipt again after a pause (refused, unanswered or lost with its connection). */
function resend(receipt) {
  counters.receipts_resent++;
  setTimeout(() => {
    enqueue(receipt);
    flush(receipt.systemId);
  }, RETRY_PAUSE_MS);
}

/** A session is gone: what it had on the wire goes out again elsewhere. */
function forget(session) {
  const list = receivers.get(session.systemId);
  if (list) {
    const i = list.indexOf(session);
    if (i >= 0) list.splice(i, 1);
  }
  for (const entry of session.inflight) {
    clearTimeout(entry.timer);
    resend(entry.receipt);
  }
  session.inflight.clear();
}

function onBind(session, pdu, kind) {
  const respond = (status) => session.send(pdu.response({ command_status: status, system_id: 'NODESMSC' }));
  if (session.bound) {
    respond(ESME_RALYBND);
    return;
  }
  if (options.systemId !== null && pdu.system_id !== options.systemId) {
    counters.binds_refused++;
    respond(ESME_RINVSYSID);
    return;
  }
  if (options.password !== null && pdu.password !== options.password) {
    counters.binds_refused++;
    respond(ESME_RINVPASWD);
    return;
  }
  counters.binds++;
  session.bound = kind;
  session.systemId = pdu.system_id;
  respond(ESME_ROK);
  if (kind !== 'transmitter') {
    let list = receivers.get(session.systemId);
    if (!list) {
      list = [];
      receivers.set(session.systemId, list);
    }
    list.push(session);
    flush(session.systemId);
  }
}

function onSubmit(session, pdu) {
  if (session.bound !== 'transmitter' && session.bound !== 'transceiver') {
    session.send(pdu.response({ command_status: ESME_RINVBNDSTS }));
    return;
  }
  counters.submits++;
  const id = String(nextId++);
  session.send(pdu.response({ message_id: id }));
  if ((pdu.registered_delivery & 0x01) === 0) return;
  counters.receipts_requested++;
  if (pending >= options.maxPending) {
    counters.receipts_dropped++;
    return;
  }
  pending++;
  const receipt = receiptFor(session, pdu, id);
  setTimeout(() => {
    enqueue(receipt);
    flush(receipt.systemId);
  }, options.receiptDelayMs);
}

const server = smpp.createServer({}, (session) => {
  session.bound = null;
  session.inflight = new Set();
  session.on('bind_transmitter', (pdu) => onBind(session, pdu, 'transmitter'));
  session.on('bind_receiver', (pdu) => onBind(session, pdu, 'receiver'));
  session.on('bind_transceiver', (pdu) => onBind(session, pdu, 'transceiver'));
  session.on('submit_sm', (pdu) => onSubmit(session, pdu));
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    forget(session);
    session.send(pdu.response(), () => session.close());
  });
  session.on('close', () => forget(session));
  session.on('error', () => {
    forget(session);
    session.destroy();
  });
});

let stopping = false;
function stop(reason) {
  if (stopping) return;
  stopping = true;
  console.log(JSON.stringify({ smsc: 'node-smpp', stopped: reason, pending, ...counters }));
  server.close();
  for (const session of server.sessions.slice()) session.destroy();
  // Bounded: whatever is still open does not keep the process alive.
  setTimeout(() => process.exit(0), 200).unref();
}

server.on('error', (e) => {
  console.error(`smsc.js: ${e.message}`);
  process.exit(1);
});

server.listen(options.port, options.host, () => {
  console.log(JSON.stringify({ smsc: 'node-smpp', port: server.address().port }));
});

process.stdin.on('end', () => stop('stdin closed'));
process.stdin.on('error', () => stop('stdin closed'));
process.stdin.resume();
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
setTimeout(() => stop('lifetime reached'), options.lifetimeS * 1000).unref();
