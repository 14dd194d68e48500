#!/usr/bin/env node
// Interoperability scenario against SMSMax driven by the independent node
// `smpp` package (pinned in package.json / package-lock.json).
//
//   node conformance/interop/node/client.js HOST PORT SYSTEM_ID PASSWORD \
//       [--throttled-system-id ID --throttled-password PW] [--server-system-id SMSMax]
//
// Prints one JSON object per check ({peer, check, ok, detail}) and a final
// {summary: ...} object; exits 1 if any check failed, 2 if the package is
// missing (run `npm ci` in this folder).
'use strict';

let smpp;
try {
  smpp = require('smpp');
} catch (e) {
  console.log(JSON.stringify({ peer: 'node-smpp', error: `cannot load the smpp package: ${e.message}` }));
  process.exit(2);
}

const PEER = 'node-smpp';
const SOURCE = '447700900001';
const DEST = '447700900002';
const ESME_ROK = 0x00;
const ESME_RINVBNDSTS = 0x04;
const ESME_RINVPASWD = 0x0e;
const ESME_RTHROTTLED = 0x58;
const STATE_ACCEPTED = 6;
const TIMEOUT_MS = 10000;

const results = [];

function report(check, ok, detail = {}) {
  const entry = { peer: PEER, check, ok: Boolean(ok), detail };
  results.push(entry);
  console.log(JSON.stringify(entry));
}

function parseArgs(argv) {
  const positional = [];
  const options = { serverSystemId: 'SMSMax', throttledSystemId: null, throttledPassword: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--throttled-system-id') options.throttledSystemId = argv[++i];
    else if (arg === '--throttled-password') options.throttledPassword = argv[++i];
    else if (arg === '--server-system-id') options.serverSystemId = argv[++i];
    else positional.push(arg);
  }
  if (positional.length !== 4) {
    console.error('usage: client.js HOST PORT SYSTEM_ID PASSWORD [--throttled-system-id ID --throttled-password PW]');
    process.exit(64);
  }
  const [host, port, systemId, password] = positional;
  return { host, port: Number(port), systemId, password, ...options };
}

/// A session wrapped in promises; `closed` resolves when the socket closes.
function connect(args) {
  return new Promise((resolve, reject) => {
    const session = smpp.connect({ host: args.host, port: args.port });
    const timer = setTimeout(() => reject(new Error('connect timed out')), TIMEOUT_MS);
    session.closed = new Promise((done) => session.on('close', done));
    session.on('error', (e) => {
      session.lastError = e;
      clearTimeout(timer);
      reject(e);
    });
    session.on('connect', () => {
      clearTimeout(timer);
      resolve(session);
    });
  });
}

/// Sends one request and resolves with its response (matched by sequence number).
function call(session, command, fields = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${command}_resp within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    const sent = session[command](fields, (pdu) => {
      clearTimeout(timer);
      resolve(pdu);
    });
    if (!sent) {
      clearTimeout(timer);
      reject(new Error(`socket not writable for ${command}`));
    }
  });
}

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve('timeout'), ms))]);
}

async function bind(args, kind, systemId, password) {
  const session = await connect(args);
  const resp = await call(session, `bind_${kind}`, { system_id: systemId, password, interface_version: 0x34 });
  return { session, resp };
}

/// unbind -> unbind_resp ROK, then the gateway closes the connection.
async function unbindAndCheckClose(session) {
  const resp = await call(session, 'unbind');
  const closed = (await withTimeout(session.closed.then(() => 'closed'), 5000)) === 'closed';
  if (!closed) session.destroy();
  return {
    ok: resp.command === 'unbind_resp' && resp.command_status === ESME_ROK && closed,
    detail: { command: resp.command, status: resp.command_status, closed_by_gateway: closed },
  };
}

function submitFields(extra) {
  return {
    source_addr_ton: 1,
    source_addr_npi: 1,
    source_addr: SOURCE,
    dest_addr_ton: 1,
    dest_addr_npi: 1,
    destination_addr: DEST,
    registered_delivery: 0,
    ...extra,
  };
}

function goodId(resp) {
  const id = resp.message_id || '';
  return resp.command_status === ESME_ROK && id.length > 0 && id.length <= 64;
}

async function checkBinds(args) {
  for (const kind of ['transmitter', 'receiver', 'transceiver']) {
    try {
      const { session, resp } = await bind(args, kind, args.systemId, args.password);
      report(`bind_${kind}`, resp.command === `bind_${kind}_resp` && resp.command_status === ESME_ROK && resp.system_id === args.serverSystemId && resp.sc_interface_version === 0x34, {
        status: resp.command_status,
        system_id: resp.system_id,
        sc_interface_version: resp.sc_interface_version,
      });
      const { ok, detail } = await unbindAndCheckClose(session);
      report(`unbind_${kind}`, ok, detail);
    } catch (e) {
      report(`bind_${kind}`, false, { error: String(e) });
    }
  }
}

/// Sends every part of a multipart message and reports the answers.
async function submitParts(session, check, partFields, extraOk = true) {
  const answers = [];
  for (const fields of partFields) {
    answers.push(await call(session, 'submit_sm', submitFields(fields)));
  }
  const ids = answers.map((r) => r.message_id || '');
  report(
    check,
    extraOk && answers.every(goodId) && new Set(ids).size === ids.length,
    { parts: answers.length, statuses: answers.map((r) => r.command_status), message_ids: ids },
  );
}

async function checkSubmits(args) {
  const { session } = await bind(args, 'transceiver', args.systemId, args.password);

  // GSM 7-bit text (data_coding 0: the package encodes with GSM 03.38, one octet per septet).
  let resp = await call(session, 'submit_sm', submitFields({ data_coding: 0, short_message: 'Hello from node-smpp @ SMSMax: {1+1=2} €' }));
  const gsmId = resp.message_id;
  report('submit_gsm7', goodId(resp), { status: resp.command_status, message_id: resp.message_id });

  // UCS-2: Greek and an emoji (a surrogate pair in UTF-16).
  resp = await call(session, 'submit_sm', submitFields({ data_coding: 8, short_message: 'Καλημέρα κόσμε 😀' }));
  report('submit_ucs2', goodId(resp), { status: resp.command_status, message_id: resp.message_id });

  // The package does not split long messages: split 400 characters ourselves.
  const longText = 'SMSMax interop long message '.repeat(20).slice(0, 400);
  const chunks = [];
  for (let i = 0; i < longText.length; i += 153) chunks.push(longText.slice(i, i + 153));

  // As SAR TLVs.
  await submitParts(
    session,
    'submit_long_sar',
    chunks.map((chunk, n) => ({
      data_coding: 0,
      short_message: chunk,
      sar_msg_ref_num: 0x4242,
      sar_total_segments: chunks.length,
      sar_segment_seqnum: n + 1,
    })),
    chunks.length >= 3,
  );

  // With a UDH (8-bit reference IEI 0x00) the package prepends and flags (esm_class |= 0x40).
  await submitParts(
    session,
    'submit_long_udh',
    chunks.map((chunk, n) => ({
      data_coding: 0,
      esm_class: 0,
      short_message: { udh: Buffer.from([0x05, 0x00, 0x03, 0x7a, chunks.length, n + 1]), message: chunk },
    })),
    chunks.length >= 3,
  );

  // The whole text in one PDU, in the message_payload TLV.
  resp = await call(session, 'submit_sm', submitFields({ data_coding: 0, message_payload: longText }));
  report('submit_message_payload', goodId(resp), { status: resp.command_status, message_id: resp.message_id });

  // data_sm (message in message_payload, data_coding detected by the package).
  resp = await call(session, 'data_sm', submitFields({ message_payload: 'data_sm from node-smpp' }));
  report('data_sm', resp.command === 'data_sm_resp' && goodId(resp), { status: resp.command_status, message_id: resp.message_id });

  // query_sm on the GSM message's id: ACCEPTED (6), no final date yet.
  resp = await call(session, 'query_sm', { message_id: gsmId, source_addr_ton: 1, source_addr_npi: 1, source_addr: SOURCE });
  report(
    'query_sm',
    resp.command === 'query_sm_resp' && resp.command_status === ESME_ROK && resp.message_id === gsmId && resp.message_state === STATE_ACCEPTED,
    { status: resp.command_status, message_id: resp.message_id, message_state: resp.message_state, final_date: resp.final_date },
  );

  resp = await call(session, 'enquire_link');
  report('enquire_link', resp.command === 'enquire_link_resp' && resp.command_status === ESME_ROK, { status: resp.command_status });

  const { ok, detail } = await unbindAndCheckClose(session);
  report('unbind', ok, detail);
}

async function checkWrongPassword(args) {
  const { session, resp } = await bind(args, 'transmitter', args.systemId, `${args.password}X`.slice(-8));
  report('wrong_password', resp.command === 'bind_transmitter_resp' && resp.command_status === ESME_RINVPASWD, {
    status: resp.command_status,
  });
  session.destroy();
}

async function checkSubmitOnReceiver(args) {
  const { session } = await bind(args, 'receiver', args.systemId, args.password);
  const resp = await call(session, 'submit_sm', submitFields({ short_message: 'receivers cannot submit' }));
  report('submit_on_receiver', resp.command === 'submit_sm_resp' && resp.command_status === ESME_RINVBNDSTS, {
    command: resp.command,
    status: resp.command_status,
  });
  await unbindAndCheckClose(session);
}

async function checkThrottling(args) {
  if (!args.throttledSystemId) {
    report('throttling', true, { skipped: 'no --throttled-system-id given' });
    return;
  }
  const { session, resp } = await bind(args, 'transmitter', args.throttledSystemId, args.throttledPassword);
  if (resp.command_status !== ESME_ROK) {
    report('throttling', false, { bind_status: resp.command_status });
    session.destroy();
    return;
  }
  // 30 requests written back to back, answers collected as they come.
  const answers = await Promise.all(
    Array.from({ length: 30 }, (_, i) => call(session, 'submit_sm', submitFields({ short_message: `burst ${i}` }))),
  );
  const statuses = answers.map((r) => r.command_status);
  const accepted = statuses.filter((s) => s === ESME_ROK).length;
  const throttled = statuses.filter((s) => s === ESME_RTHROTTLED).length;
  report('throttling', accepted > 0 && throttled > 0 && accepted + throttled === 30, {
    accepted,
    throttled,
    other: statuses.filter((s) => s !== ESME_ROK && s !== ESME_RTHROTTLED),
  });
  await unbindAndCheckClose(session);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const scenarios = [checkBinds, checkSubmits, checkWrongPassword, checkSubmitOnReceiver, checkThrottling];
  for (const scenario of scenarios) {
    try {
      await scenario(args);
    } catch (e) {
      report(scenario.name, false, { error: String(e && e.stack ? e.stack : e) });
    }
  }
  const failed = results.filter((r) => !r.ok).map((r) => r.check);
  let version = null;
  try {
    version = require('smpp/package.json').version;
  } catch (e) {
    // not fatal
  }
  console.log(
    JSON.stringify({
      peer: PEER,
      summary: true,
      library_version: version,
      passed: results.length - failed.length,
      failed,
      seconds: (Date.now() - started) / 1000,
    }),
  );
  process.exit(failed.length ? 1 : 0);
}

main();
