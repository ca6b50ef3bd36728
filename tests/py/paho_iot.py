"""paho-mqtt against `live broker --iot`, as a device would meet IoT Core: wss:// with TLS
verified against the broker's CA file, the URL presigned by botocore (sigv4_presign.py).

usage: paho_iot.py HOST PORT CA_FILE REGION ACCESS_KEY SECRET TOKEN|- CASE

CASE `good` connects and round-trips a QoS 1 message, printing `ok: round trip`; the cases
`wrong-secret`, `expired` and `unsigned` expect the upgrade refused and print
`refused: <reason>` (exit 1 if they connect).
"""
import datetime
import os
import queue
import ssl
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paho.mqtt.client as mqtt  # noqa: E402
from sigv4_presign import presign  # noqa: E402


def main():
    host, port, ca_file, region, key, secret, token, case = sys.argv[1:9]
    port = int(port)
    token = None if token == "-" else token
    url = f"wss://{host}:{port}/mqtt"
    if case == "unsigned":
        signed = url
    else:
        when = datetime.datetime.now(datetime.timezone.utc)
        if case == "expired":
            when -= datetime.timedelta(minutes=10)
        if case == "wrong-secret":
            secret = secret + "x"
        signed = presign(url, region, key, secret, token, when.strftime("%Y%m%dT%H%M%SZ"), 300)
    parts = urllib.parse.urlsplit(signed)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-iot-{case}", transport="websockets"
    )
    client.ws_set_options(path=f"{parts.path}?{parts.query}")
    client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
    received = queue.Queue()
    client.on_message = lambda c, u, msg: received.put(msg)
    try:
        client.connect(host, port, keepalive=30)
    except Exception as e:  # the upgrade refused: paho raises on the handshake
        if case == "good":
            print(f"failed: {e!r}")
            sys.exit(1)
        print(f"refused: {e!r}")
        return
    if case != "good":
        print("failed: connected with a bad signature")
        sys.exit(1)
    client.loop_start()
    connected = queue.Queue()
    client.on_subscribe = lambda c, u, mid, codes, props: connected.put(codes)
    client.subscribe("live/iot/test", qos=1)
    connected.get(timeout=10)
    info = client.publish("live/iot/test", b"over TLS and SigV4", qos=1)
    info.wait_for_publish(timeout=10)
    msg = received.get(timeout=10)
    assert msg.payload == b"over TLS and SigV4" and msg.qos == 1, (msg.payload, msg.qos)
    print("ok: round trip")
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
