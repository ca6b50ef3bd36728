"""Connect with a last will, say so, and wait to be killed.

Usage: paho_will.py ws://127.0.0.1:PORT/mqtt TOPIC
"""
import sys
import threading
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

url = urlparse(sys.argv[1])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-will", transport="websockets")
c.ws_set_options(path=url.path or "/mqtt")
c.will_set(sys.argv[2], b"killed", qos=1)
ready = threading.Event()
c.on_connect = lambda *_: ready.set()
c.connect(url.hostname, url.port, keepalive=30)
c.loop_start()
if not ready.wait(10):
    sys.exit("could not connect")
print("connected", flush=True)
threading.Event().wait()
