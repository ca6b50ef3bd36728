"""Serves one zip at one path over HTTP, standing in for Lambda's code location (moto's
`GetFunction` gives an amazonaws.com URL nothing serves). Prints `listening PORT`.

usage: code_server.py ZIP PATH
"""
import http.server
import sys

zip_path, path = sys.argv[1:3]
body = open(zip_path, "rb").read()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != path:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
