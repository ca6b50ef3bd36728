"""Broker conformance seen by an independent MQTT client: Python's paho-mqtt over WebSocket.

Usage: paho_conformance.py ws://127.0.0.1:PORT/mqtt
Prints one line per check and exits non-zero on the first failure.
"""
import queue
import sys
import uuid
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

URL = urlparse(sys.argv[1])
WAIT = 10.0


class Client:
    """A paho client on its own network thread; received messages land in a queue."""

    def __init__(self, name, will=None):
        self.name = f"{name}-{uuid.uuid4().hex[:8]}"
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.closed = queue.Queue()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.name,
            transport="websockets",
            protocol=mqtt.MQTTv311,
        )
        c.ws_set_options(path=URL.path or "/mqtt")
        if will:
            c.will_set(will[0], will[1], qos=1, retain=False)
        c.on_message = lambda _c, _u, m: self.messages.put(m)
        c.on_subscribe = lambda _c, _u, mid, codes, _p: self.acks.put(("sub", mid, codes))
        c.on_publish = lambda _c, _u, mid, _rc, _p: self.acks.put(("pub", mid, None))
        c.on_disconnect = lambda _c, _u, _f, rc, _p: self.closed.put(rc)
        connected = queue.Queue()
        c.on_connect = lambda _c, _u, _f, rc, _p: connected.put(rc)
        c.connect(URL.hostname, URL.port, keepalive=30)
        c.loop_start()
        rc = connected.get(timeout=WAIT)
        if rc.is_failure:
            check(False, f"{name} connected ({rc})")
        self.c = c

    def subscribe(self, topic, qos=1):
        _, mid = self.c.subscribe(topic, qos)
        while True:
            kind, got, codes = self.acks.get(timeout=WAIT)
            if kind == "sub" and got == mid:
                return codes

    def publish(self, topic, payload, qos=1, retain=False):
        self.c.publish(topic, payload, qos=qos, retain=retain)

    def next(self):
        return self.messages.get(timeout=WAIT)

    def wait_closed(self):
        try:
            self.closed.get(timeout=WAIT)
            return True
        except queue.Empty:
            return False

    def until_marker(self, topic):
        """Publish a marker from another client; return what arrived before it."""
        Client("marker").publish(topic, b"marker")
        before = []
        while True:
            m = self.next()
            if m.topic == topic and m.payload == b"marker":
                return before
            before.append(m)


def check(ok, what):
    if not ok:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def main():
    sub = Client("sub")
    sub.subscribe("p/#")
    pub = Client("pub")

    pub.publish("p/q0", b"zero", qos=0)
    m = sub.next()
    check((m.payload, m.qos) == (b"zero", 0), "QoS 0 delivered")
    pub.publish("p/q1", b"one", qos=1)
    m = sub.next()
    check((m.payload, m.qos) == (b"one", 1), "QoS 1 delivered at QoS 1")

    pub.publish("p/r", "kept ✓".encode(), retain=True)
    sub.until_marker("p/m1")
    late = Client("late")
    late.subscribe("p/r")
    m = late.next()
    check(m.payload == "kept ✓".encode() and m.retain, "retained message replayed to a late subscriber")
    pub.publish("p/r", b"", retain=True)
    sub.until_marker("p/m2")
    later = Client("later")
    later.subscribe("p/r")
    later.subscribe("p/m3")
    check(later.until_marker("p/m3") == [], "retained message cleared by an empty retained publish")

    watcher = Client("watcher")
    watcher.subscribe("w/#")
    dropper = Client("dropper", will=("w/dropped", b"gone"))
    dropper.c.loop_stop()
    dropper.c.socket().close()  # the connection drops without DISCONNECT
    m = watcher.next()
    check((m.topic, m.payload) == ("w/dropped", b"gone"), "last will on a dropped connection")
    clean = Client("clean", will=("w/clean", b"gone"))
    clean.c.disconnect()
    check(clean.wait_closed(), "a clean disconnect closes the connection")
    check(watcher.until_marker("w/marker") == [], "no last will on a clean disconnect")

    wild = Client("wild")
    wild.subscribe("x/+/z")
    hash_ = Client("hash")
    hash_.subscribe("x/#")
    for t in ["x/a/z", "x/a/b/z", "x", "y/a/z"]:
        pub.publish(t, t.encode())
    got = [m.topic for m in wild.until_marker("x/m/z")]
    check(got == ["x/a/z"], f"+ matches exactly one level ({got})")
    got = [m.topic for m in hash_.until_marker("x/n")]
    check(got == ["x/a/z", "x/a/b/z", "x", "x/m/z"], f"# matches the rest and the parent ({got})")

    limits = Client("limits")
    limits.subscribe("l/#")
    big = Client("big")
    big.publish("l/big", b"\x07" * 131072)
    m = limits.next()
    check((m.topic, m.payload) == ("l/big", b"\x07" * 131072), "a payload of 131,072 bytes accepted")
    big.publish("l/big", b"\x07" * 131073)
    check(big.wait_closed(), "a payload of 131,073 bytes closes the publisher's connection")
    check(limits.until_marker("l/m1") == [], "a payload of 131,073 bytes is not delivered")

    codes = limits.subscribe("a/b/c/d/e/f/g/h/i")
    check(codes[0].is_failure, "a filter with 8 slashes refused in SUBACK")
    deep = Client("deep")
    deep.publish("l/b/c/d/e/f/g/h", b"seven")
    deep.publish("l/b/c/d/e/f/g/h/i", b"eight")
    check(deep.wait_closed(), "a publish to a topic with 8 slashes closes the connection")
    got = [m.payload for m in limits.until_marker("l/m2")]
    check(got == [b"seven"], f"a topic with 7 slashes delivered, one with 8 refused ({got})")


if __name__ == "__main__":
    main()
