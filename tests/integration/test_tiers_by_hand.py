"""The protocol document alone is enough: messages written by hand from docs/uplink-protocol.md (literal JSON, signed
and encrypted here with hashlib, cryptography and gmssl, not with tiers' code) drive the real receiver, and a minimal
receiver written here from the document alone takes everything the uplink sends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl.sm4 import SM4_ENCRYPT, CryptSM4

from tankwatch.clock import ManualClock, SystemClock
from tankwatch.records import AlarmAction, AlarmEvent
from tests.tiers_support import Collected, demo_codes, demo_site, drained, make_core, sending, serve_http
from tiers.credentials import Credentials
from tiers.crypto import cipher_for
from tiers.enqueue import queue_records
from tiers.outbound import LatestValues, alarm_record
from tiers.outbox import Outbox
from tiers.receiver import SenderAccount
from tiers.receiver_tcp import TcpReceiver
from tiers.schema import ServiceId
from tiers.sender import SenderSettings
from tiers.transports import HttpTransport, TcpTransport

DOC = Path(__file__).resolve().parents[2] / "docs" / "uplink-protocol.md"
T_SEND = 1_714_536_010_000  # 2024-05-01 12:00:10 Beijing time
# §3 of the document, verbatim (key sign-key-0123456789abcdef)
DOC_EXAMPLE = (
    '{"appId":"ent-e1","serviceId":"REALTIME","dataId":"0f8fad5b-d9cb-469f-a165-70867728950e","districtCode":"320623",'
    '"sendTime":"2024-05-01 12:00:10","resend":false,"version":"1.0","data":[{"companyCode":"32062300001",'
    '"hazardCode":"32062300001001","equipCode":"32062300001001G0001","targetCode":"32062300001001G000101",'
    '"value":3.42,"unit":"m","collectTime":"2024-05-01 12:00:00","dataStatus":0,"quality":"good"}],'
    '"sign":"b4328419e712a17542d5675a0d186fcc980af99e8ff530159b4ecd36ee813deb"}'
)
PLAIN_KEY, AES_KEY, SM4_KEY = b"sign-key-0123456789abcdef", b"0123456789abcdef", b"fedcba9876543210"


def signed(unsigned: str, key: bytes) -> bytes:
    """§3: HMAC-SHA256 over the message without sign; sign appended as the last member."""
    body = unsigned.encode()
    return body[:-1] + b',"sign":"' + hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b'"}'


def envelope(app_id: str, service: str, data_id: str, data: str, resend: str = "false") -> str:
    """§2: the members in order, without sign; ``data`` is JSON text (an array, or a quoted ciphertext)."""
    return (f'{{"appId":"{app_id}","serviceId":"{service}","dataId":"{data_id}","districtCode":"320623",'
            f'"sendTime":"2024-05-01 12:00:10","resend":{resend},"version":"1.0","data":{data}}}')


def aes_data(records: str) -> str:
    """§4.2: AES-ECB, PKCS7, standard Base64."""
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(AES_KEY), modes.ECB()).encryptor()
    raw = enc.update(padder.update(records.encode()) + padder.finalize()) + enc.finalize()
    return '"' + base64.b64encode(raw).decode() + '"'


def sm4_data(records: str) -> str:
    """§4.3 without a fixed IV: hex of a random IV then the SM4-CBC/PKCS7 ciphertext."""
    iv = os.urandom(16)
    sm4 = CryptSM4()
    sm4.set_key(SM4_KEY, SM4_ENCRYPT)
    return '"' + (iv + sm4.crypt_cbc(iv, records.encode())).hex() + '"'


REALTIME = ('[{"companyCode":"32062300001","targetCode":"32062300001001G000101","value":3.42,'
            '"collectTime":"2024-05-01 12:00:00","dataStatus":0},{"companyCode":"32062300001",'
            '"targetCode":"32062300001001G000102","value":null,"collectTime":"2024-05-01 11:59:50","dataStatus":9}]')
ALARMS = ('[{"eventId":"9b2f0c1d7e3a4b5c6d7e","alarmId":"4a1b2c3d4e5f60718293","companyCode":"32062300001",'
          '"hazardCode":"32062300001001","equipCode":"32062300001001G0001","targetCode":"32062300001001G000101",'
          '"alarmType":"HIHI","alarmCode":"HH","action":"raise","eventTime":"2024-05-01 12:00:03",'
          '"priority":"critical","status":0,"value":15.2,"limit":15.04,"startTime":"2024-05-01 12:00:03"},'
          '{"eventId":"c0ffee0123456789abcd","alarmId":"4a1b2c3d4e5f60718293","companyCode":"32062300001",'
          '"targetCode":"32062300001001G000101","alarmType":"HIHI","action":"clear","eventTime":"2024-05-01 12:00:09",'
          '"priority":"critical","status":1,"handler":"park-reg","endTime":"2024-05-01 12:00:09","result":"handled",'
          '"dispositions":[{"time":"2024-05-01 12:00:08","handler":"park-reg","text":"派人现场处置"}]}]')
HEARTBEAT = ('[{"companyCode":"32062300001","heartbeatTime":"2024-05-01 12:00:10","pointsTotal":62,'
             '"pointsOnline":60,"backlog":0,"version":"hand-1"}]')
TARGET = ('[{"targetCode":"32062300001001G000101","targetName":"T101 液位 @LT-A","equipCode":"32062300001001G0001",'
          '"hazardCode":"32062300001001","companyCode":"32062300001","targetType":"level","unit":"m",'
          '"bitNo":"T101-LT-A","lowValue":0,"topValue":16,"lowValue01":0.96,"lowValue02":1.6,"topValue01":14.08,'
          '"topValue02":15.04,"period":1,"isUse":1}]')


def test_the_documents_example_signature_is_what_the_rule_gives() -> None:
    assert DOC_EXAMPLE in DOC.read_text(encoding="utf-8")
    unsigned = DOC_EXAMPLE[: DOC_EXAMPLE.rindex(',"sign":"')] + "}"
    assert signed(unsigned, PLAIN_KEY).decode() == DOC_EXAMPLE


def hand_core(tmp_path: Path, consumer: Collected):  # noqa: ANN201
    accounts = [
        SenderAccount(Credentials("ent-e1", PLAIN_KEY, None), frozenset({"32062300001"})),
        SenderAccount(Credentials("ent-aes", AES_KEY, cipher_for("aes", AES_KEY)), frozenset({"32062300001"})),
        SenderAccount(Credentials("ent-sm4", SM4_KEY, cipher_for("sm4", SM4_KEY)), frozenset({"32062300001"})),
    ]
    return make_core(tmp_path / "park.db", accounts, consumer, ManualClock(T_SEND))


async def test_hand_written_messages_over_http_get_the_documented_answers(tmp_path: Path) -> None:
    consumer = Collected()
    async with serve_http(hand_core(tmp_path, consumer)) as port, httpx.AsyncClient() as client:
        async def post(service: str, body: bytes) -> tuple[int, dict]:
            r = await client.post(f"http://127.0.0.1:{port}/{service}", content=body,
                                  headers={"Content-Type": "application/json"})
            return r.status_code, json.loads(r.content)

        assert await post("REALTIME", DOC_EXAMPLE.encode()) == (200, {
            "code": 0, "dataId": "0f8fad5b-d9cb-469f-a165-70867728950e", "message": "accepted"})
        assert (await post("REALTIME", DOC_EXAMPLE.encode()))[1]["code"] == 1
        cases = [
            ("REALTIME", signed(envelope("ent-aes", "REALTIME", "hand-aes-0001", aes_data(REALTIME)), AES_KEY), 200, 0),
            ("ALARM", signed(envelope("ent-sm4", "ALARM", "hand-sm4-0001", sm4_data(ALARMS), "true"), SM4_KEY), 200, 0),
            ("HEARTBEAT", signed(envelope("ent-e1", "HEARTBEAT", "hand-hb-0001", HEARTBEAT), PLAIN_KEY), 200, 0),
            ("BASE_TARGET", signed(envelope("ent-e1", "BASE_TARGET", "hand-bt-0001", TARGET), PLAIN_KEY), 200, 0),
            ("REALTIME", signed(envelope("ent-e1", "REALTIME", "hand-bad-0001", REALTIME), AES_KEY), 401, 1002),
            ("REALTIME", signed(envelope("ent-x", "REALTIME", "hand-bad-0002", REALTIME), PLAIN_KEY), 401, 1001),
            ("REALTIME", signed(envelope("ent-e1", "REALTIME", "hand-bad-0003", REALTIME.replace("3.42", '"3.42"')),
                                PLAIN_KEY), 422, 1005),
            ("ALARM", signed(envelope("ent-e1", "REALTIME", "hand-bad-0004", REALTIME), PLAIN_KEY), 422, 1005),
            ("REALTIME", signed(envelope("ent-e1", "REALTIME", "hand-bad-0005", REALTIME.replace(
                "32062300001", "32062300009")), PLAIN_KEY), 403, 1003),
            ("REALTIME", b'{"appId":', 400, 1004),
        ]
        for service, body, status, code in cases:
            got_status, ack = await post(service, body)
            assert (got_status, ack["code"]) == (status, code), (service, body[:80], ack)
        schema = (await post("REALTIME", cases[6][1]))[1]
        assert schema["dataId"] == "hand-bad-0003" and schema["message"].startswith("data[0].value:")
    by_id = {c[4]: c for c in consumer.calls}
    assert set(by_id) == {"0f8fad5b-d9cb-469f-a165-70867728950e", "hand-aes-0001", "hand-sm4-0001", "hand-hb-0001",
                          "hand-bt-0001"}
    raise_, clear = by_id["hand-sm4-0001"][2]
    assert by_id["hand-sm4-0001"][3] is True and (raise_.action, clear.action, clear.result) == (
        "raise", "clear", "handled")
    assert [r.value for r in by_id["hand-aes-0001"][2]] == [3.42, None]
    assert by_id["hand-bt-0001"][2][0].targetName == "T101 液位 @LT-A"


async def test_hand_written_frames_over_tcp_are_answered_in_order_on_the_connection(tmp_path: Path) -> None:
    consumer = Collected()
    server = TcpReceiver(hand_core(tmp_path, consumer), "127.0.0.1", 0)
    port = await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        first = signed(envelope("ent-e1", "REALTIME", "tcp-hand-0001", REALTIME), PLAIN_KEY)
        second = signed(envelope("ent-aes", "REALTIME", "tcp-hand-0002", aes_data(REALTIME)), AES_KEY)
        oversize = b'{"appId":"' + b"x" * (4 * 1024 * 1024 + 10) + b'"}'
        at_sign = signed(envelope("ent-e1", "BASE_TARGET", "tcp-hand-0003", TARGET.replace("@", "\\u0040")),
                         PLAIN_KEY)
        writer.write(first + b"@@\r\n" + second + b"@@" + oversize + b"@@" + at_sign + b"@@")
        await writer.drain()
        acks = []
        buffer = b""
        while len(acks) < 4:
            buffer += await asyncio.wait_for(reader.read(65536), 10)
            *frames, buffer = buffer.split(b"@@")
            acks += [json.loads(f) for f in frames if f.strip()]
        assert [(a["code"], a.get("dataId")) for a in acks] == [(0, "tcp-hand-0001"), (0, "tcp-hand-0002"),
                                                                (1006, None), (0, "tcp-hand-0003")]
        writer.close()
    finally:
        await server.stop()
    assert consumer.calls[2][2][0].targetName == "T101 液位 @LT-A"


class MinimalReceiver:
    """Written from the document alone (§2–§5, §7): check the sign, decrypt AES if configured, answer by dataId.

    It swallows the first frame it gets over TCP without answering, as a receiver that dies mid-request would.
    """

    def __init__(self, key: bytes, aes: bool) -> None:
        self.key, self.aes = key, aes
        self.messages: list[dict] = []  # every attempt received, decoded
        self.stored: dict[str, list] = {}  # dataId → records, once
        self.swallowed = False
        self.lock = threading.Lock()

    def answer(self, body: bytes) -> dict:
        at = body.rindex(b',"sign":"')
        expected = hmac.new(self.key, body[:at] + b"}", hashlib.sha256).hexdigest()
        message = json.loads(body)
        if not hmac.compare_digest(expected, message["sign"]):
            return {"code": 1002, "dataId": message.get("dataId"), "message": "bad signature"}
        data = message["data"]
        if self.aes:
            dec = Cipher(algorithms.AES(self.key), modes.ECB()).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            raw = dec.update(base64.b64decode(data)) + dec.finalize()
            data = json.loads(unpadder.update(raw) + unpadder.finalize())
        with self.lock:
            self.messages.append({**message, "data": data})
            if message["dataId"] in self.stored:
                return {"code": 1, "dataId": message["dataId"], "message": "duplicate"}
            self.stored[message["dataId"]] = data
        return {"code": 0, "dataId": message["dataId"], "message": "ok"}

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while chunk := await reader.read(65536):
            buffer += chunk
            *frames, buffer = buffer.split(b"@@")
            for body in frames:
                if not self.swallowed:
                    self.swallowed = True
                    continue
                writer.write(json.dumps(self.answer(body)).encode() + b"@@")
        writer.close()

    def http_handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ack = receiver.answer(body)
                assert self.path.rsplit("/", 1)[-1] == json.loads(body)["serviceId"]
                out = json.dumps(ack).encode()
                self.send_response(200 if ack["code"] in (0, 1) else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                """Quiet."""

        return Handler


def queue_some(outbox: Outbox) -> dict[str, list]:
    site = demo_site()
    codes = demo_codes(site)
    now = SystemClock().now_ms()
    snapshot = LatestValues(site, codes).snapshot(now)[:20]
    snapshot[0]["unit"] = "m@site"
    event = AlarmEvent("ev-hand", "occ-hand", "T101-LT-A", "HH", AlarmAction.RAISED, now, "critical", "E1", "HS1",
                       value=15.2, limit=15.04)
    ids = {}
    for service, records in ((ServiceId.REALTIME, snapshot), (ServiceId.ALARM, [alarm_record(event, codes)])):
        [data_id] = queue_records(outbox, service, records, now, 1000)
        ids[data_id] = json.loads(json.dumps(records))
    return ids


@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_the_uplink_talks_to_a_minimal_receiver_written_from_the_document(tmp_path: Path, kind: str) -> None:
    aes = kind == "tcp"
    key = AES_KEY if aes else PLAIN_KEY
    minimal = MinimalReceiver(key, aes)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "minimal")
    sent = queue_some(outbox)
    creds = Credentials("ent-e1", key, cipher_for("aes", key) if aes else None)
    settings = SenderSettings(ack_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2)
    async with contextlib.AsyncExitStack() as stack:
        if aes:
            server = await asyncio.start_server(minimal.serve_tcp, "127.0.0.1", 0)
            stack.push_async_callback(server.wait_closed)
            stack.callback(server.close)
            transport = TcpTransport("127.0.0.1", server.sockets[0].getsockname()[1], 1)
        else:
            http = ThreadingHTTPServer(("127.0.0.1", 0), minimal.http_handler())
            threading.Thread(target=http.serve_forever, daemon=True).start()
            stack.callback(http.server_close)
            stack.callback(http.shutdown)
            transport = HttpTransport(f"http://127.0.0.1:{http.server_address[1]}", 1)
        async with sending(outbox, transport, creds, settings, "minimal"):
            await drained(outbox, 10)
    assert not len(outbox) and minimal.stored == sent  # every record, exactly as queued, once
    for message in minimal.messages:
        assert (message["appId"], message["districtCode"], message["version"]) == ("ent-e1", "320623", "1.1")
    if aes:  # the swallowed first attempt came again, same dataId, marked resend
        retried = [m for m in minimal.messages if m["resend"]]
        assert retried and all(m["dataId"] in sent for m in retried)
