#!/usr/bin/env python3
"""Interoperability scenario against SMSMax driven by the independent Python
`smpplib` package (pinned in .ci/run).

    python3 conformance/interop/smpplib_client.py HOST PORT SYSTEM_ID PASSWORD \
        [--throttled-system-id ID --throttled-password PW] [--server-system-id SMSMax]

Prints one JSON object per check ({"peer", "check", "ok", "detail"}) and a
final {"summary": ...} object; exits 1 if any check failed, 2 if smpplib is
missing.
"""

import argparse
import json
import socket
import sys
import time
import warnings

try:
    import smpplib.client
    import smpplib.consts as C
    import smpplib.exceptions
    import smpplib.gsm
    import smpplib.smpp
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(json.dumps({"peer": "smpplib", "error": "cannot import smpplib: %s" % e}))
    sys.exit(2)

warnings.simplefilter("ignore", DeprecationWarning)

PEER = "smpplib"
SOURCE = "447700900001"
DEST = "447700900002"
ESME_ROK = 0x00
ESME_RINVBNDSTS = 0x04
ESME_RINVPASWD = 0x0E
ESME_RTHROTTLED = 0x58
STATE_ACCEPTED = 6

results = []


def report(check, ok, **detail):
    entry = {"peer": PEER, "check": check, "ok": bool(ok), "detail": detail}
    results.append(entry)
    print(json.dumps(entry, default=str), flush=True)


def text(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or ""


def client(args):
    c = smpplib.client.Client(args.host, args.port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    return c


def bind(c, kind, system_id, password):
    method = getattr(c, "bind_" + kind)
    return method(system_id=system_id, password=password, interface_version=0x34)


def unbind_and_check_close(c):
    """unbind -> unbind_resp ROK, then the gateway closes the connection."""
    resp = c.unbind()
    ok = resp.command == "unbind_resp" and resp.status == ESME_ROK
    closed = False
    try:
        c._socket.settimeout(5)
        closed = c._socket.recv(1) == b""
    except (socket.timeout, OSError):
        closed = False
    c.disconnect()
    return ok and closed, {"command": resp.command, "status": resp.status, "closed_by_gateway": closed}


def submit(c, **kwargs):
    fields = dict(
        source_addr_ton=C.SMPP_TON_INTL,
        source_addr_npi=C.SMPP_NPI_ISDN,
        source_addr=SOURCE,
        dest_addr_ton=C.SMPP_TON_INTL,
        dest_addr_npi=C.SMPP_NPI_ISDN,
        destination_addr=DEST,
        registered_delivery=0,
    )
    fields.update(kwargs)
    c.send_message(**fields)
    return c.read_pdu()


def good_id(resp):
    mid = text(resp.message_id)
    return resp.command == "submit_sm_resp" and resp.status == ESME_ROK and 0 < len(mid) <= 64, mid


def check_binds(args):
    for kind in ("transmitter", "receiver", "transceiver"):
        c = client(args)
        try:
            resp = bind(c, kind, args.system_id, args.password)
            sid = text(resp.system_id)
            version = getattr(resp, "sc_interface_version", None)
            report(
                "bind_" + kind,
                resp.status == ESME_ROK and sid == args.server_system_id and version == 0x34,
                status=resp.status,
                system_id=sid,
                sc_interface_version=version,
            )
            ok, detail = unbind_and_check_close(c)
            report("unbind_" + kind, ok, **detail)
        except Exception as e:  # noqa: BLE001 - every failure is a failed check
            report("bind_" + kind, False, error=repr(e))
            c.disconnect()


def check_submits(args):
    c = client(args)
    bind(c, "transceiver", args.system_id, args.password)

    # GSM 7-bit text (one octet per septet, data_coding 0).
    parts, coding, esm = smpplib.gsm.make_parts("Hello from smpplib @ SMSMax: 1+1=2!")
    resp = submit(c, short_message=parts[0], data_coding=coding, esm_class=esm)
    ok, gsm_id = good_id(resp)
    report("submit_gsm7", ok and coding == C.SMPP_ENCODING_DEFAULT, status=resp.status, message_id=gsm_id)

    # UCS-2 (Greek and an emoji as a surrogate pair).
    parts, coding, esm = smpplib.gsm.make_parts(
        "Καλημέρα κόσμε \U0001F600", encoding=C.SMPP_ENCODING_ISO10646
    )
    resp = submit(c, short_message=parts[0], data_coding=coding, esm_class=esm)
    ok, ucs2_id = good_id(resp)
    report("submit_ucs2", ok and coding == 8 and len(parts) == 1, status=resp.status, message_id=ucs2_id)

    # 400 GSM characters: smpplib splits them with an 8-bit-reference UDH.
    long_text = ("SMSMax interop long message " * 20)[:400]
    parts, coding, esm = smpplib.gsm.make_parts(long_text)
    ids, statuses = [], []
    for part in parts:
        resp = submit(c, short_message=part, data_coding=coding, esm_class=C.SMPP_MSGMODE_DEFAULT | esm)
        statuses.append(resp.status)
        ids.append(text(resp.message_id))
    report(
        "submit_long_udh",
        len(parts) >= 3
        and esm == C.SMPP_GSMFEAT_UDHI
        and all(s == ESME_ROK for s in statuses)
        and all(0 < len(i) <= 64 for i in ids)
        and len(set(ids)) == len(ids),
        parts=len(parts),
        statuses=statuses,
        message_ids=ids,
    )

    # A long UCS-2 message, split by smpplib with UDH too.
    parts, coding, esm = smpplib.gsm.make_parts("Ελληνικό κείμενο " * 12, encoding=C.SMPP_ENCODING_ISO10646)
    ids, statuses = [], []
    for part in parts:
        resp = submit(c, short_message=part, data_coding=coding, esm_class=esm)
        statuses.append(resp.status)
        ids.append(text(resp.message_id))
    report(
        "submit_long_ucs2_udh",
        len(parts) >= 2 and all(s == ESME_ROK for s in statuses) and len(set(ids)) == len(ids),
        parts=len(parts),
        statuses=statuses,
        message_ids=ids,
    )

    # The same 400 characters split without UDH, as SAR TLVs.
    parts, coding, esm = smpplib.gsm.make_parts(long_text, use_udhi=False)
    ids, statuses = [], []
    for n, part in enumerate(parts, start=1):
        resp = submit(
            c,
            short_message=part,
            data_coding=coding,
            esm_class=esm,
            sar_msg_ref_num=0x1234,
            sar_total_segments=len(parts),
            sar_segment_seqnum=n,
        )
        statuses.append(resp.status)
        ids.append(text(resp.message_id))
    report(
        "submit_long_sar",
        len(parts) >= 3 and all(s == ESME_ROK for s in statuses) and len(set(ids)) == len(ids),
        parts=len(parts),
        statuses=statuses,
        message_ids=ids,
    )

    # query_sm on the GSM message's id: ACCEPTED (6), no final date yet.
    c.query_message(
        message_id=gsm_id,
        source_addr_ton=C.SMPP_TON_INTL,
        source_addr_npi=C.SMPP_NPI_ISDN,
        source_addr=SOURCE,
    )
    resp = c.read_pdu()
    report(
        "query_sm",
        resp.command == "query_sm_resp"
        and resp.status == ESME_ROK
        and text(resp.message_id) == gsm_id
        and resp.message_state == STATE_ACCEPTED,
        status=resp.status,
        message_id=text(resp.message_id),
        message_state=resp.message_state,
        final_date=text(resp.final_date),
    )

    # enquire_link on a bound session.
    c.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=c))
    resp = c.read_pdu()
    report("enquire_link", resp.command == "enquire_link_resp" and resp.status == ESME_ROK, status=resp.status)

    ok, detail = unbind_and_check_close(c)
    report("unbind", ok, **detail)


def check_wrong_password(args):
    c = client(args)
    try:
        bind(c, "transmitter", args.system_id, args.password + "-wrong")
        report("wrong_password", False, error="bind succeeded")
    except smpplib.exceptions.PDUError as e:
        status = e.args[1] if len(e.args) > 1 else None
        report("wrong_password", status == ESME_RINVPASWD, status=status)
    finally:
        c.disconnect()


def check_submit_on_receiver(args):
    c = client(args)
    try:
        bind(c, "receiver", args.system_id, args.password)
        # smpplib refuses submit_sm in BOUND_RX on the client side, so write
        # the PDU it builds straight to the socket to see the gateway's answer.
        pdu = smpplib.smpp.make_pdu(
            "submit_sm",
            client=c,
            source_addr_ton=C.SMPP_TON_INTL,
            source_addr_npi=C.SMPP_NPI_ISDN,
            source_addr=SOURCE,
            dest_addr_ton=C.SMPP_TON_INTL,
            dest_addr_npi=C.SMPP_NPI_ISDN,
            destination_addr=DEST,
            short_message=b"receivers cannot submit",
        )
        c._socket.sendall(pdu.generate())
        resp = c.read_pdu()
        report(
            "submit_on_receiver",
            resp.command == "submit_sm_resp" and resp.status == ESME_RINVBNDSTS and resp.sequence == pdu.sequence,
            command=resp.command,
            status=resp.status,
        )
        unbind_and_check_close(c)
    except Exception as e:  # noqa: BLE001
        report("submit_on_receiver", False, error=repr(e))
        c.disconnect()


def check_throttling(args):
    if not args.throttled_system_id:
        report("throttling", True, skipped="no --throttled-system-id given")
        return
    c = client(args)
    try:
        bind(c, "transmitter", args.throttled_system_id, args.throttled_password)
        burst = 30
        sent = []
        for i in range(burst):
            pdu = smpplib.smpp.make_pdu(
                "submit_sm",
                client=c,
                source_addr_ton=C.SMPP_TON_INTL,
                source_addr_npi=C.SMPP_NPI_ISDN,
                source_addr=SOURCE,
                dest_addr_ton=C.SMPP_TON_INTL,
                dest_addr_npi=C.SMPP_NPI_ISDN,
                destination_addr=DEST,
                short_message=("burst %d" % i).encode(),
            )
            c.send_pdu(pdu)
            sent.append(pdu.sequence)
        answers = {}
        for _ in range(burst):
            resp = c.read_pdu()
            answers[resp.sequence] = resp.status
        ok_count = sum(1 for s in answers.values() if s == ESME_ROK)
        throttled = sum(1 for s in answers.values() if s == ESME_RTHROTTLED)
        report(
            "throttling",
            sorted(answers) == sorted(sent) and ok_count > 0 and throttled > 0 and ok_count + throttled == burst,
            accepted=ok_count,
            throttled=throttled,
            other=[s for s in answers.values() if s not in (ESME_ROK, ESME_RTHROTTLED)],
        )
        unbind_and_check_close(c)
    except Exception as e:  # noqa: BLE001
        report("throttling", False, error=repr(e))
        c.disconnect()


def library_version():
    try:
        from importlib.metadata import version

        return version("smpplib")
    except Exception:  # noqa: BLE001
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("system_id")
    parser.add_argument("password")
    parser.add_argument("--throttled-system-id")
    parser.add_argument("--throttled-password")
    parser.add_argument("--server-system-id", default="SMSMax")
    args = parser.parse_args()

    started = time.monotonic()
    for scenario in (check_binds, check_submits, check_wrong_password, check_submit_on_receiver, check_throttling):
        try:
            scenario(args)
        except Exception as e:  # noqa: BLE001 - a crashed scenario is a failed check
            report(scenario.__name__, False, error=repr(e))

    failed = [r["check"] for r in results if not r["ok"]]
    summary = {
        "peer": PEER,
        "summary": True,
        "library_version": library_version(),
        "passed": len(results) - len(failed),
        "failed": failed,
        "seconds": round(time.monotonic() - started, 2),
    }
    print(json.dumps(summary), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
